"""Words officers really write: Kurdish district names, Halabja, accent-less Kurmanji, GBVIMS and
Primero option ids, common Arabic terms."""

from __future__ import annotations

import pytest

from casepool.core.schema import load_schema
from casepool.intake.matching import CodeMatcher


def _code(field_name: str, text: str) -> tuple[str, ...]:
    schema = load_schema()
    return CodeMatcher.of(schema.field(field_name), schema).parse(text).codes


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("زاخۆ", "IQG09Q04"),
        ("Zaxo", "IQG09Q04"),
        ("ئامێدی", "IQG09Q01"),
        ("Amedi", "IQG09Q01"),
        ("Soran", "IQG11Q05"),
        ("Koya", "IQG11Q03"),
        ("Akre", "IQG15Q01"),
        ("Shekhan", "IQG15Q06"),
        ("Sexan", "IQG15Q06"),  # Şêxan typed without accents
        ("هەڵەبجە", "IQG06Q05"),
        # checked against the cited sources (district.yaml header), 2026-11-30
        ("ههڵهبجه", "IQG06Q05"),  # the older Sorani encoding the source table uses
        ("Helebce", "IQG06Q05"),
        ("شقلاوه", "IQG11Q06"),
        ("Şeqlawe", "IQG11Q06"),
        ("Çemçemall", "IQG06Q02"),
        ("Pshder", "IQG06Q08"),
        ("پشدەر", "IQG06Q08"),
        ("Simele", "IQG09Q03"),
        ("سێمێل", "IQG09Q03"),
        ("Pencwen", "IQG06Q07"),
        ("Rewandiz", "IQG11Q05"),
        ("سۆران", "IQG11Q05"),
        ("Koye", "IQG11Q03"),
        ("مەخموور", "IQG11Q04"),
        ("Mexmûr", "IQG11Q04"),
        ("شنگال", "IQG15Q07"),
        ("Şingal", "IQG15Q07"),
        ("دەربەندیخان", "IQG06Q03"),
        ("Hewlêr", "IQG11Q02"),
        ("Dihok", "IQG09Q02"),
    ],
)
def test_kurdish_district_names(text, code):
    assert _code("district", text) == (code,)


def test_halabja_as_a_governorate_follows_the_documented_crosswalk():
    assert _code("governorate", "Halabja") == ("IQG06",)
    assert _code("governorate", "هەڵەبجە") == ("IQG06",)


@pytest.mark.parametrize(
    ("text", "code"), [("bele", "yes"), ("Ere", "yes"), ("ere", "yes"), ("nizanim", "unknown")]
)
def test_kurmanji_without_accents(text, code):
    assert _code("reported_to_police", text) == (code,)


@pytest.mark.parametrize(
    ("field_name", "text", "code"),
    [
        ("violence_type", "Physical Assault", "other"),
        ("violence_type", "Denial of Resources, Opportunities or Services", "other"),
        ("violence_type", "Psychological / Emotional Abuse", "other"),
        ("perpetrator_relationship", "Intimate Partner/Former Partner", "intimate_partner"),
        ("perpetrator_relationship", "Primary Caregiver", "family"),
        ("perpetrator_relationship", "Family other than spouse or caregiver", "family"),
        ("perpetrator_relationship", "Supervisor/Employer", "employer"),
        ("perpetrator_relationship", "Schoolmate", "acquaintance"),
        ("perpetrator_relationship", "Teacher/School official", "authority_figure"),
        ("perpetrator_relationship", "Service Provider", "authority_figure"),
        ("perpetrator_relationship", "Cotenant/Housemate/Landlord", "acquaintance"),
        ("perpetrator_relationship", "Family Friend/Neighbor", "acquaintance"),
        ("perpetrator_relationship", "Other refugee/IDP/Returnee", "acquaintance"),
        ("perpetrator_relationship", "Other resident community member", "acquaintance"),
        ("perpetrator_relationship", "No relation", "stranger"),
        ("perpetrator_relationship", "unknown", "unknown"),
        ("perpetrator_relationship", "family_other_than_spouse_or_caregiver", "family"),
        ("exploitation_types", "اتجار بالبشر", "trafficking"),
        ("exploitation_types", "استغلال جنسي تجاري", "prostitution"),
        ("population_group", "host_community", "host_community"),
    ],
)
def test_gbvims_and_primero_words(field_name, text, code):
    assert _code(field_name, text) == (code,)


def test_multi_select_arabic_terms_split_on_the_arabic_comma():
    assert _code("exploitation_types", "أخرى، اتجار بالبشر") == ("other", "trafficking")


def test_every_unconfirmed_kurdish_district_name_is_marked_and_names_no_other_district():
    """Synonyms not found in the cited sources carry `# unverified`; none may collide."""
    from casepool.core.normalising import fold
    from casepool.core.resources import schemas_dir

    text = (schemas_dir() / "codelists" / "district.yaml").read_text(encoding="utf-8")
    assert "Wikipedia (CC BY-SA 4.0" in text and "checked on 2026-11-30" in text
    marked = [
        line.split("- ", 1)[1].split("#", 1)[0].strip()
        for line in text.splitlines()
        if line.endswith("# unverified")
    ]
    assert "شارباژێڕ" in marked and "Zêbar" in marked
    assert "Zaxo" not in marked and "سۆران" not in marked
    schema = load_schema()
    codelist = schema.codelist_of(schema.field("district"))
    for word in marked:
        owners = {
            c.code
            for c in codelist.codes
            if fold(word) in {fold(s) for s in (*c.synonyms, *c.labels.values())}
        }
        assert len(owners) == 1, word

"""The schema files are tested data: they load, carry four labels, and agree with each other."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from casepool.core.i18n import message_problems, messages
from casepool.core.normalising import fold
from casepool.core.schema import LANGUAGES, load_codelists, load_schema, read_yaml, schemas_dir
from casepool.intake.matching import code_index, header_index
from casepool.intake.validation_report import error_types

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "iraq_admin_pcodes.csv"


def test_every_schema_file_parses():
    for path in sorted(schemas_dir().rglob("*.yaml")):
        assert read_yaml(str(path.relative_to(schemas_dir()))) is not None, path


def test_every_code_and_field_has_four_labels():
    schema = load_schema()
    for f in schema.fields:
        assert all(f.labels[lang] for lang in LANGUAGES), f.name
    for codelist in load_codelists().values():
        for code in codelist.codes:
            assert all(code.labels[lang] for lang in LANGUAGES), (codelist.name, code.code)


def test_every_coded_field_names_an_existing_code_list():
    schema = load_schema()
    for f in schema.fields:
        if f.type in {"code", "codes"}:
            assert f.codelist in schema.codelists


def test_every_district_lies_in_a_governorate():
    lists = load_codelists()
    # How many there are is the code list's business (it may grow, e.g. Halabja as a 19th
    # governorate); the shape of every code and its parent is the law.
    governorates = set(lists["governorate"].values)
    assert governorates and all(re.fullmatch(r"IQG\d\d", g) for g in governorates)
    districts = lists["district"].codes
    assert districts and all(re.fullmatch(r"IQG\d\dQ\d\d", d.code) for d in districts)
    for district in districts:
        assert district.parent in governorates, district.code
        assert district.code.startswith(district.parent)


@pytest.mark.skipif(not REFERENCE.is_file(), reason="shared reference data not beside the repo")
def test_pcodes_match_the_shared_reference():
    with REFERENCE.open(encoding="utf-8") as handle:
        reference = {row["pcode"]: row for row in csv.DictReader(handle)}
    lists = load_codelists()
    ours = {c.code: c for name in ("governorate", "district") for c in lists[name].codes}
    assert set(ours) == set(reference)
    for code, row in reference.items():
        assert ours[code].labels["en"] == row["name_en"]
        assert ours[code].labels["ar"] == row["name_ar"]


def test_kri_governorates_are_flagged_as_region():
    governorates = load_codelists()["governorate"]
    kri = {c.code for c in governorates.codes if c.attributes.get("region") == "KRI"}
    assert kri == {"IQG06", "IQG09", "IQG11"}


def test_labels_and_synonyms_never_point_at_two_codes():
    # code_index raises SchemaError on any ambiguity; building every index is the test.
    for codelist in load_codelists().values():
        index = code_index(codelist)
        for code in codelist.codes:
            assert index[fold(code.code)] == code.code
    assert header_index()["case id"] == "case_id"


def test_boys_are_never_folded_into_other():
    sex = load_codelists()["sex"]
    index = code_index(sex)
    for word in ("boy", "Male", "ذكر", "ولد", "نێر", "کوڕ", "kur"):
        assert index[fold(word)] == "M", word
    assert index[fold("other")] == "U"


def test_message_files_define_each_key_once():
    assert message_problems() == ()


def test_every_message_has_four_languages():
    for key, templates in messages().items():
        assert set(LANGUAGES) <= set(templates), key


def test_every_error_type_has_title_and_rule_in_four_languages():
    for slug, spec in error_types().items():
        for part in ("title", "rule"):
            assert all(spec[part][lang] for lang in LANGUAGES), (slug, part)

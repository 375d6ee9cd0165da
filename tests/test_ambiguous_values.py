"""No silent miscoding: placeholders and words naming several codes are reported, never guessed."""

from __future__ import annotations

import itertools

from casepool.cli.text.intake import render_report
from casepool.core.normalising import fold
from casepool.core.schema import load_codelists, load_schema
from casepool.intake.mapping import Mapping
from casepool.intake.matching import (
    CodeMatcher,
    ambiguous_words,
    code_index,
    placeholders,
    word_key,
)
from casepool.intake.validating import validate_export


def test_na_file_reports_every_placeholder_with_the_officers_header(fixtures):
    result = validate_export(fixtures / "intake" / "na_in_yes_no_columns.csv")
    ambiguous = [
        [f.row, f.params["header"], f.params["value"]]
        for f in result.findings
        if f.type == "ambiguous-value"
    ]
    assert ambiguous == [
        [2, "Disability", "NA"],
        [2, "Police report", "NA"],
        [3, "Displacement status", "IDP"],
        [3, "Disability", "-"],
        [3, "Police report", "N/A"],
        [4, "Disability", "؟"],
    ]
    # "NA" is never read as the Kurmanji "na" (no): it stays missing until the mapping decides.
    records = result.records.sort("_row")
    assert records.get_column("reported_to_police").to_list()[:2] == [None, None]
    assert records.get_column("population_group").to_list()[1] == "unknown"
    text = render_report(result, "en")
    assert "row 2, Police report (Reported to police): 'NA' could mean" in text
    assert "read as missing (no answer) until your mapping decides" in text
    assert "IDP in camp / IDP out of camp; read as Unknown" in text


def test_the_organisations_mapping_decides_what_a_placeholder_means(fixtures):
    mapping = Mapping(
        values={
            "any_field": {"NA": "", "N/A": "", "-": "", "؟": ""},
            "reported_to_police": {"NA": "unknown", "N/A": "unknown"},
            "population_group": {"idp": "idp_out_of_camp"},
        }
    )
    result = validate_export(fixtures / "intake" / "na_in_yes_no_columns.csv", mapping)
    assert result.valid, result.flatten()
    records = result.records.sort("_row")
    assert records.get_column("reported_to_police").to_list() == ["unknown", "unknown", "no", "yes"]
    assert records.get_column("disability").to_list() == [None, None, None, "no"]
    assert records.get_column("population_group").to_list()[1] == "idp_out_of_camp"


def test_kurmanji_na_is_asked_about_but_accentless_kurmanji_is_read():
    schema = load_schema()
    matcher = CodeMatcher.of(schema.field("reported_to_police"), schema)
    assert matcher.parse("Na").error == "ambiguous-value"
    assert matcher.parse("bele").codes == ("yes",)
    assert matcher.parse("Ere").codes == ("yes",)
    assert matcher.parse("Naye zanin").codes == ("unknown",)
    decided = CodeMatcher.of(schema.field("reported_to_police"), schema, {"Na": "no"})
    assert decided.parse("NA").codes == ("no",)


def test_no_placeholder_or_ambiguous_word_is_silently_a_code_of_any_list():
    for codelist in load_codelists().values():
        index = code_index(codelist)
        ambiguous = ambiguous_words(codelist)
        for word in ambiguous:
            # Either the word is not in the index, or the matcher asks before the index answers.
            matcher = CodeMatcher(field=None, index=index, ambiguous=ambiguous)  # type: ignore[arg-type]
            assert not isinstance(matcher.word(word), str), (codelist.name, word)
    assert {word_key(w) for w in ("NA", "N/A", "-", "؟", "?")} <= placeholders()


def test_one_word_never_names_different_codes_in_lists_sharing_those_codes():
    """A word read as `no` in one yes/no list must not be `unknown` in another, and so on."""
    lists = list(load_codelists().values())
    clashes = []
    for a, b in itertools.combinations(lists, 2):
        shared = set(a.values) & set(b.values)
        index_a, index_b = code_index(a), code_index(b)
        for word in index_a.keys() & index_b.keys():
            code_a, code_b = index_a[word], index_b[word]
            if code_a != code_b and code_a in shared and code_b in shared:
                clashes.append((a.name, b.name, word, code_a, code_b))
    assert clashes == []


def test_no_synonym_is_a_placeholder():
    for codelist in load_codelists().values():
        for code in codelist.codes:
            for text in (*code.synonyms, *code.labels.values()):
                if fold(text) == "na":
                    continue  # the Kurmanji label of "no": asked about through the placeholder list
                assert word_key(text) not in placeholders(), (codelist.name, text)


def test_a_multi_select_part_that_is_ambiguous_is_reported():
    schema = load_schema()
    matcher = CodeMatcher.of(schema.field("services_received"), schema)
    assert matcher.parse("health; N/A").error == "ambiguous-value"
    assert matcher.parse("health; legal").codes == ("health", "legal")


def test_arabic_labels_file_reads_kurdish_districts_and_asks_about_na_and_the_vague_header(
    fixtures,
):
    result = validate_export(fixtures / "intake" / "arabic_labels_kobo_style.csv")
    assert [[f.row, f.field, f.type] for f in result.findings] == [
        [3, "reported_to_police", "ambiguous-value"]
    ]
    assert result.asked_columns == {"الوضع": ("population_group", "case_status")}
    records = result.records.sort("_row")
    assert records.get_column("district").to_list() == ["IQG09Q04", "IQG09Q01", "IQG11Q05"]
    assert records.get_column("exploitation_types").to_list()[:2] == [
        ["other", "trafficking"],
        ["prostitution"],
    ]

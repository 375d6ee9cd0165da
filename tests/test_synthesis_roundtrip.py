"""Every synthetic export reads back through validate with its mapping; validate finds exactly the
injected errors (precision and recall 100%) and exactly the rows without consent."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casepool.intake.validating import validate_export
from casepool.synthesis import synthesize


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, orgs=6, records=1800, seed=11, error_rate=0.02)
    return out, json.loads((out / "truth.json").read_text(encoding="utf-8"))


def _validate(folder: Path, export: dict[str, Any], today: date):
    mapping = folder / export["mapping"] if export["mapping"] else None
    return validate_export(folder / export["file"], mapping=mapping, today=today)


def _expected(export: dict[str, Any]) -> set[tuple[int, str, str]]:
    return {(e["row"], e["field"], e["type"]) for e in export["errors"]}


DIALECTS = ["canonical_csv", "arabic_xlsx", "cp1256_csv", "kobo_csv", "sorani_csv", "english_xlsx"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_validate_finds_exactly_the_injected_errors(sample, dialect: str) -> None:
    folder, truth = sample
    export = next(e for e in truth["exports"] if e["dialect"] == dialect)
    today = date.fromisoformat(truth["generator"]["today"])
    result = _validate(folder, export, today)  # encodings, separators, BOMs found by the reader

    found = {tuple(f) for f in result.flatten(["row", "field", "type"])}
    expected = _expected(export)
    assert result.rows == export["rows"]
    assert len(expected) > 20, "the sample must carry errors to find"
    assert found - expected == set(), "validate flagged rows that are clean (precision)"
    assert expected - found == set(), "validate missed injected errors (recall)"
    assert sorted(result.no_consent_rows) == export["no_consent_rows"]
    assert {t for _, _, t in expected} >= {"unknown-code", "missing-value", "duplicate-case-id"}


def test_every_error_type_is_injected_somewhere(sample) -> None:
    _, truth = sample
    types = {e["type"] for export in truth["exports"] for e in export["errors"]}
    assert types == {
        "missing-value", "unknown-code", "not-a-number", "out-of-range", "bad-date",
        "future-date", "date-order", "district-outside-governorate", "platform-without-online",
        "platform-missing", "age-dob-mismatch", "too-many-values", "duplicate-case-id",
    }  # fmt: skip


def test_identifier_columns_are_not_submitted(sample) -> None:
    folder, truth = sample
    today = date.fromisoformat(truth["generator"]["today"])
    for export in truth["exports"]:
        result = _validate(folder, export, today)
        columns = export["identifier_columns"]
        for kind in ("survivor_name", "caregiver_name", "caregiver_phone", "address", "notes"):
            assert columns[kind] in result.extra_columns, (export["file"], kind)


def test_windows_1256_export_is_detected_without_encoding(sample) -> None:
    folder, truth = sample
    export = next(e for e in truth["exports"] if e["dialect"] == "cp1256_csv")
    result = _validate(folder, export, date.fromisoformat(truth["generator"]["today"]))
    assert result.encoding == "cp1256"


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31),
    rate=st.sampled_from([0.01, 0.03, 0.05]),
    orgs=st.integers(1, 8),
    fmt=st.sampled_from(["csv", "parquet", "mixed"]),
)
def test_precision_and_recall_hold_for_any_seed(
    tmp_path: Path, seed: int, rate: float, orgs: int, fmt: str
) -> None:
    out = tmp_path / f"s{seed}_{rate}_{orgs}_{fmt}"
    synthesize(out, orgs=orgs, records=60 * orgs, seed=seed, error_rate=rate, fmt=fmt)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    today = date.fromisoformat(truth["generator"]["today"])
    assert len(truth["exports"]) == orgs
    for export in truth["exports"]:
        result = _validate(out, export, today)
        assert {tuple(f) for f in result.flatten(["row", "field", "type"])} == _expected(export)
        assert sorted(result.no_consent_rows) == export["no_consent_rows"]

"""Cross-field rules are data: the case record names them, intake holds one small check per kind."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from casepool.core.schema import RULE_CHECKS, load_schema
from casepool.intake.rules import CHECKS
from casepool.intake.validating import validate_export

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_every_rule_names_a_known_check_and_error_type():
    schema = load_schema()
    assert set(CHECKS) == RULE_CHECKS
    errors = yaml.safe_load((SCHEMAS / "error_types.yaml").read_text(encoding="utf-8"))
    assert schema.rules and all(rule.error in errors for rule in schema.rules)
    assert {r.check for r in schema.rules} == RULE_CHECKS  # every check is used


CSV = (
    "case_id,consent_statistics,survivor_sex,survivor_age,governorate,incident_date,report_date,"
    "exploitation_types,reported_to_police\n"
    "A-1,yes,F,12,IQG01,2025-01-10,2025-03-01,prostitution,no\n"
    "A-1,yes,M,13,IQG01,2025-02-10,2025-03-02,prostitution,no\n"
)


def _finding_types(tmp_path: Path) -> list[str]:
    export = tmp_path / "two_rows_one_case_number.csv"
    export.write_text(CSV, encoding="utf-8")
    result = validate_export(export)
    return sorted(set(result.findings_frame.get_column("type").to_list()))


def test_a_rule_removed_from_the_yaml_is_no_longer_checked(tmp_path, monkeypatch):
    assert "duplicate-case-id" in _finding_types(tmp_path)
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    record = yaml.safe_load((copy / "case_record.yaml").read_text(encoding="utf-8"))
    record["rules"] = [r for r in record["rules"] if r["check"] != "unique"]
    (copy / "case_record.yaml").write_text(yaml.safe_dump(record, allow_unicode=True), "utf-8")
    monkeypatch.setenv("CASEPOOL_SCHEMAS", str(copy))
    load_schema.cache_clear()
    try:
        assert "duplicate-case-id" not in _finding_types(tmp_path)
    finally:
        monkeypatch.delenv("CASEPOOL_SCHEMAS")
        load_schema.cache_clear()

"""`casepool submit` end to end: the validate code path, the allowlist, no identifier in any package."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from casepool.cli.main import app
from casepool.core.errors import UsageError
from casepool.core.periods import is_period, parse_period
from casepool.exchange.keys import generate_keys
from casepool.exchange.package import DATA
from casepool.intake.submit import submit_export
from casepool.synthesis import synthesize

FIXTURE = Path(__file__).parent / "fixtures" / "submit" / "small_export_with_names_and_phones.csv"
# Every identifying value the fixture holds (names, phones, case numbers, notes, birth date).
FIXTURE_IDENTIFIERS = [
    "Layla Hassan", "Omar Saleh", "Sara Ali", "Hiba Jasim", "Yusuf Kareem",
    "07701234567", "+964 750 123 4567", "٠٧٨٠١٢٣٤٥٦٧", "07501112233",
    "C-001", "C-002", "C-003", "C-004", "C-005",
    "Referred by school counsellor Amina", "Do not share", "Amina", "2012-03-05",
]  # fmt: skip


@pytest.fixture
def key_dir(tmp_path):
    generate_keys("ORG-01", tmp_path / "keys")
    return tmp_path / "keys"


def submit_cli(runner, *args):
    return runner.invoke(app, ["submit", *map(str, args)])


def package_texts(package: Path) -> list[bytes]:
    """The bytes to search: the zip, each member, and the Parquet rewritten uncompressed."""
    raw = package.read_bytes()
    with zipfile.ZipFile(package) as archive:
        members = [archive.read(name) for name in archive.namelist()]
        data = archive.read(DATA)
    plain = io.BytesIO()
    frame = pl.read_parquet(io.BytesIO(data))
    frame.write_parquet(plain, compression="uncompressed", statistics=False)
    # Dates are months (the 1st): a birth date on a 1st would match a month by chance, so the
    # text of date cells is left out here; that no day survives is checked on its own.
    dates = frame.select(pl.col(pl.Date))
    assert all(set(c.drop_nulls().dt.day()) <= {1} for c in dates.iter_columns())
    values = "\n".join(
        str(v)
        for column in frame.select(pl.exclude(pl.Date)).iter_columns()
        for v in column.to_list()
        if v is not None
    )
    return [raw, *members, plain.getvalue(), values.encode("utf-8")]


def assert_no_identifier(packages: list[Path], identifiers: list[str]) -> None:
    checked = [i for i in dict.fromkeys(identifiers) if len(i.encode("utf-8")) >= 5]
    assert packages and checked
    for package in packages:
        for blob in package_texts(package):
            for value in checked:
                assert value.encode("utf-8") not in blob, (package.name, "identifier found")


def test_submit_writes_a_package_and_says_what_was_kept_and_dropped(tmp_path, runner, key_dir):
    outbox = tmp_path / "outbox"
    result = submit_cli(runner, FIXTURE, "--org", "ORG-01", "--period", "2025-07",
                        "--key", key_dir, "--out", outbox)  # fmt: skip
    assert result.exit_code == 0, result.output
    packages = list(outbox.glob("*.casepool.zip"))
    assert len(packages) == 1 and packages[0].name.startswith("ORG-01_2025-07_")
    assert "Submitted for ORG-01, 2025-07: 3." in result.output
    assert "Dropped 1 records without consent" in result.output
    assert "Dropped 1 records registered outside 2025-07" in result.output
    assert (
        "Columns not submitted (never copied): Child name, Phone, Notes, Date of birth."
        in result.output
    )
    assert_no_identifier(packages, FIXTURE_IDENTIFIERS)
    for value in FIXTURE_IDENTIFIERS:
        assert value not in result.output
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]  # no temporary left


def test_submit_json_matches_the_library_result(tmp_path, runner, key_dir):
    cli = submit_cli(runner, FIXTURE, "--org", "ORG-01", "--period", "2025-07", "--key", key_dir,
                     "--out", tmp_path / "a", "--json")  # fmt: skip
    assert cli.exit_code == 0
    library = submit_export(FIXTURE, org="ORG-01", period="2025-07", key_dir=key_dir,
                            outbox=tmp_path / "b").to_dict()  # fmt: skip
    printed = json.loads(cli.stdout)
    assert {k: v for k, v in printed.items() if k != "package"} == {
        k: v for k, v in library.items() if k != "package"
    }
    assert printed["dropped"] == {"invalid": 0, "no_consent": 1, "outside_period": 1}


def test_the_same_export_and_key_give_the_same_pseudonyms(tmp_path, key_dir):
    def pseudonyms(outbox):
        out = submit_export(FIXTURE, org="ORG-01", period="2025", key_dir=key_dir, outbox=outbox)
        with zipfile.ZipFile(out.package) as archive:
            return pl.read_parquet(io.BytesIO(archive.read(DATA))).get_column("pseudonym").to_list()

    assert pseudonyms(tmp_path / "a") == pseudonyms(tmp_path / "b")
    generate_keys("ORG-01", tmp_path / "other")
    other = submit_export(FIXTURE, org="ORG-01", period="2025", key_dir=tmp_path / "other",
                          outbox=tmp_path / "c")  # fmt: skip
    with zipfile.ZipFile(other.package) as archive:
        theirs = set(pl.read_parquet(io.BytesIO(archive.read(DATA))).get_column("pseudonym"))
    assert theirs.isdisjoint(pseudonyms(tmp_path / "d"))


def test_invalid_records_refuse_with_the_validate_report_unless_dropped(tmp_path, runner, key_dir):
    export = tmp_path / "export.csv"
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace(",F,14,", ",F,19,")  # age out of range in row 2
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outbox = tmp_path / "outbox"
    refused = submit_cli(runner, export, "--org", "ORG-01", "--period", "2025", "--key", key_dir,
                         "--out", outbox)  # fmt: skip
    assert refused.exit_code == 1
    assert "row 2, Age (Age at first incident)" in refused.output
    assert "Not submitted: 1 records are invalid" in refused.output
    assert not outbox.exists() or not list(outbox.iterdir())
    dropped = submit_cli(runner, export, "--org", "ORG-01", "--period", "2025", "--key", key_dir,
                         "--out", outbox, "--drop-invalid")  # fmt: skip
    assert dropped.exit_code == 0, dropped.output
    assert "Dropped 1 invalid records" in dropped.output


def test_a_high_min_k_never_refuses_it_blanks_more_values(tmp_path, runner, key_dir):
    result = submit_cli(runner, FIXTURE, "--org", "ORG-01", "--period", "2025", "--key", key_dir,
                        "--out", tmp_path / "o", "--min-k", "10", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)
    assert outcome["local_suppression"]["k"] == 10
    assert outcome["local_suppression"]["values_suppressed"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2025-Q5"], "is not a reporting period"),
        (["--period", "2025", "--org", "ORG_X"], "is not an organisation code"),
        (["--period", "2025", "--org", "ORG-02"], "does not exist. Run `casepool keygen`"),
    ],
)
def test_submit_that_cannot_run_exits_2_with_one_line(tmp_path, runner, key_dir, args, message):
    options = {"--org": "ORG-01"}
    merged = ["--key", str(key_dir), "--out", str(tmp_path / "o")]
    if "--org" not in args:
        merged += ["--org", options["--org"]]
    result = submit_cli(runner, FIXTURE, *merged, *args)
    assert result.exit_code == 2
    assert message in result.output


def submit_every_export(folder: Path, key_dir: Path, outbox: Path) -> tuple[list[str], int]:
    """Submit each export of a synth folder for 2023, 2024 and 2025; its identifiers, rows kept."""
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    identifiers: list[str] = []
    submitted = 0
    for export in truth["exports"]:
        identifiers += [v for values in export["identifiers"].values() for v in values]
        for year in ("2023", "2024", "2025"):
            outcome = submit_export(
                folder / export["file"],
                org="ORG-01",
                period=year,
                key_dir=key_dir,
                outbox=outbox,
                mapping=folder / export["mapping"] if export["mapping"] else None,
                encoding=export["encoding"],
                drop_invalid=True,
                today=date(2025, 12, 31),
            )
            assert outcome.accepted, outcome.submission.status
            submitted += outcome.submission.rows_kept
    assert len(list(outbox.glob("*.casepool.zip"))) == 3 * len(truth["exports"])
    return identifiers, submitted


def test_no_identifier_from_synthetic_exports_appears_in_any_package(tmp_path, key_dir):
    """Every export `casepool synth` writes, submitted per year: no truth.json identifier leaks."""
    synthesize(tmp_path / "synth", orgs=6, records=600, seed=11)
    identifiers, submitted = submit_every_export(tmp_path / "synth", key_dir, tmp_path / "out")
    assert submitted > 400
    assert_no_identifier(sorted((tmp_path / "out").glob("*.casepool.zip")), identifiers)


SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.mark.skipif(not (SAMPLE_DATA / "truth.json").is_file(), reason="no sample_data/")
def test_no_identifier_from_the_committed_sample_data_appears_in_any_package(tmp_path, key_dir):
    identifiers, submitted = submit_every_export(SAMPLE_DATA, key_dir, tmp_path / "out")
    assert submitted > 2000
    assert_no_identifier(sorted((tmp_path / "out").glob("*.casepool.zip")), identifiers)


def test_every_message_key_of_submit_and_the_warehouse_exists_in_four_languages():
    import re

    from casepool.core.i18n import messages
    from casepool.core.schema import LANGUAGES

    src = Path(__file__).resolve().parents[1] / "src" / "casepool"
    files = ["exchange/keys.py", "core/periods.py", "intake/deidentifying.py", "intake/pii.py"]
    files += ["exchange/package.py", "exchange/profile.py", "intake/submit.py"]
    files += [f"warehouse/{n}.py" for n in ("store", "organisations", "ingest", "status")]
    files += [f"cli/{n}.py" for n in ("keygen", "submit", "org", "ingest", "status")]
    text = "\n".join((src / f).read_text(encoding="utf-8") for f in files)
    keys = set(re.findall(r"(?:Error|render|_refuse)\(\s*\"([a-z][a-z0-9-]+)\"", text))
    keys |= {f"pii-{k}" for k in ("phone", "email", "national-id", "dropped-column-value")}
    keys |= {"status-active", "status-superseded", "ingest-loaded", "ingest-unchanged"}
    assert len(keys) > 40
    known = messages()
    for key in sorted(keys):
        assert key in known, key
        assert all(known[key].get(lang) for lang in LANGUAGES), key


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2025", date(2025, 1, 1), date(2025, 12, 31)),
        ("2025-Q3", date(2025, 7, 1), date(2025, 9, 30)),
        ("2025-q1", date(2025, 1, 1), date(2025, 3, 31)),
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),
        ("2025-12", date(2025, 12, 1), date(2025, 12, 31)),
    ],
)
def test_periods_span_their_days(text, start, end):
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize(
    "bad", ["25", "2025-Q0", "2025-Q5", "2025-13", "2025-7", "2025/07", "", "1800"]
)
def test_malformed_periods_are_refused(bad):
    with pytest.raises(UsageError):
        parse_period(bad)


@given(st.dates(date(1990, 1, 1), date(2100, 12, 31)))
def test_every_day_lies_in_its_month_quarter_and_year(day):
    codes = [f"{day.year}", f"{day.year}-Q{(day.month - 1) // 3 + 1}", f"{day:%Y-%m}"]
    for code in codes:
        period = parse_period(code)
        assert period.contains(day) and period.code == code and is_period(code)

"""The export dialects CSOs really produce: headers, value labels, date styles, digits, encodings."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import cache

from casepool.core.schema import CaseSchema, CodeList

IDENTIFIER_KINDS = ("survivor_name", "caregiver_name", "caregiver_phone", "address", "notes")
IDENTIFIER_HEADERS = {
    "name": dict(zip(IDENTIFIER_KINDS, IDENTIFIER_KINDS, strict=True)),
    "en": {
        "survivor_name": "Child name",
        "caregiver_name": "Caregiver name",
        "caregiver_phone": "Phone",
        "address": "Address",
        "notes": "Notes",
    },
    "ar": {
        "survivor_name": "اسم الطفل",
        "caregiver_name": "اسم ولي الأمر",
        "caregiver_phone": "رقم الهاتف",
        "address": "العنوان",
        "notes": "ملاحظات",
    },
    "ckb": {
        "survivor_name": "ناوی منداڵ",
        "caregiver_name": "ناوی سەرپەرشتیار",
        "caregiver_phone": "ژمارەی تەلەفۆن",
        "address": "ناونیشان",
        "notes": "تێبینی",
    },
    "kobo": {
        "survivor_name": "survivor/name",
        "caregiver_name": "household/caregiver_name",
        "caregiver_phone": "household/phone",
        "address": "household/address",
        "notes": "case/notes",
    },
}
# KoboToolbox XML names, grouped as a form designer would group the questions.
KOBO_NAMES = {
    "case_id": "case/case_number",
    "consent_statistics": "consent/consent_statistics",
    "survivor_sex": "survivor/sex",
    "survivor_age": "survivor/age",
    "date_of_birth": "survivor/dob",
    "population_group": "survivor/displacement",
    "minority_community": "survivor/minority",
    "disability": "survivor/disability",
    "governorate": "incident/governorate",
    "district": "incident/district",
    "incident_date": "incident/first_incident",
    "report_date": "case/registration_date",
    "exploitation_types": "incident/exploitation",
    "online_platforms": "incident/platforms",
    "violence_type": "incident/violence",
    "perpetrator_relationship": "incident/perpetrator",
    "working_child": "survivor/working",
    "out_of_school": "survivor/out_of_school",
    "referral_source": "case/referred_by",
    "services_received": "services/received",
    "service_barriers": "services/barriers",
    "reported_to_police": "justice/police",
    "justice_outcome": "justice/outcome",
    "reported_elsewhere": "case/other_org",
    "case_status": "case/status",
}
KOBO_SYSTEM = ("_id", "_uuid", "_submission_time", "_index")


@dataclass(frozen=True)
class Dialect:
    """How one kind of export writes the case record.

    Date styles: iso, dmy, dmy_short (d/m/yy), mdy, date_cell (a real XLSX date), serial (an
    Excel day number). Month styles for month-only incident dates: ym (2024-03), my (03/2024).
    """

    name: str
    suffix: str = ".csv"
    encoding: str = "utf-8"
    separator: str = ","
    quote_all: bool = False
    crlf: bool = False
    headers: str = "name"  # name, en, ar, ar_synonym, ckb, kobo
    identifier_headers: str = "name"
    values: str | None = None  # None writes codes; else a label language
    multi_separator: str = " "
    digits: str = "ascii"  # ascii or arabic_indic
    report_format: str = "iso"
    incident_format: str = "iso"
    month_format: str = "ym"
    month_only_share: float = 0.0
    dob_format: str = "iso"
    omit: tuple[str, ...] = ()
    detail_fields: tuple[str, ...] = ()  # multi-select fields read from `field/option` columns
    summary_fields: tuple[str, ...] = ()  # multi-select fields read from the summary column
    text_lang: str = "en"  # language of addresses and notes
    plus_phones: bool = False  # a leading + is only safe in XLSX text cells
    case_id_pattern: str = "{prefix}-{year}-{seq}"
    value_overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # field: {code: text}
    date_order: str = "dmy"
    mapping: bool = True
    kobo: bool = False
    sheet: str = "Cases"

    @property
    def line_terminator(self) -> str:
        return "\r\n" if self.crlf else "\n"


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(name="canonical_csv", mapping=False, month_only_share=0.3),
        Dialect(name="canonical_parquet", suffix=".parquet", mapping=False),
        Dialect(
            name="arabic_xlsx",
            suffix=".xlsx",
            headers="ar",
            identifier_headers="ar",
            values="ar",
            multi_separator="، ",
            report_format="date_cell",
            incident_format="date_cell",
            month_format="my",
            month_only_share=0.25,
            dob_format="date_cell",
            text_lang="ar",
            plus_phones=True,
            case_id_pattern="{prefix}/{seq}/{year}",
            sheet="الحالات",
        ),
        Dialect(
            name="cp1256_csv",
            encoding="cp1256",
            crlf=True,
            headers="ar_synonym",
            identifier_headers="ar",
            values="ar",
            multi_separator="، ",
            report_format="dmy",
            incident_format="dmy",
            month_format="my",
            month_only_share=0.35,
            dob_format="dmy_short",
            omit=("minority_community", "disability", "justice_outcome"),
            text_lang="ar",
            case_id_pattern="{prefix}{year}{seq}",
            value_overrides={"case_status": {"open": "جاري"}},
        ),
        Dialect(
            name="kobo_csv",
            separator=";",
            quote_all=True,
            crlf=True,
            headers="kobo",
            identifier_headers="kobo",
            detail_fields=("exploitation_types", "services_received"),
            summary_fields=("online_platforms", "service_barriers"),
            kobo=True,
            case_id_pattern="{prefix}-{seq}",
        ),
        Dialect(
            name="sorani_csv",
            encoding="utf-8-sig",
            headers="ckb",
            identifier_headers="ckb",
            values="ckb",
            multi_separator="، ",
            digits="arabic_indic",
            report_format="dmy",
            incident_format="dmy",
            month_format="my",
            month_only_share=0.3,
            dob_format="dmy",
            omit=("justice_outcome",),
            text_lang="ckb",
            value_overrides={"reported_to_police": {"unknown": "نازانرێت"}},
        ),
        Dialect(
            name="english_xlsx",
            suffix=".xlsx",
            headers="en",
            identifier_headers="en",
            values="en",
            multi_separator="; ",
            report_format="serial",
            incident_format="mdy",
            month_format="my",
            month_only_share=0.2,
            dob_format="mdy",
            plus_phones=True,
            value_overrides={"population_group": {"host_community": "Resident (host)"}},
            date_order="mdy",
            case_id_pattern="{prefix}{seq}",
        ),
    )
}


def dialect_fields(dialect: Dialect, schema: CaseSchema) -> list[str]:
    """The case-record fields this dialect writes, in the schema's order."""
    return [f.name for f in schema.fields if f.name not in dialect.omit]


def field_header(dialect: Dialect, schema: CaseSchema, name: str) -> str:
    """The column header of a field in this dialect."""
    f = schema.field(name)
    if dialect.headers == "name":
        return name
    if dialect.headers == "kobo":
        return KOBO_NAMES[name]
    if dialect.headers == "ar_synonym":
        for synonym in f.synonyms:
            if _is_arabic(synonym) and _fits(synonym, "cp1256"):
                return synonym
        return f.label("ar")
    return f.label(dialect.headers)


def _is_arabic(text: str) -> bool:
    return any("ARABIC" in unicodedata.name(c, "") for c in text)


def _fits(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _simple_fold(text: str) -> str:
    return " ".join(text.casefold().split())


@cache
def _spellings(codelist: CodeList) -> dict[str, set[str]]:
    """Every folded spelling in a code list and the codes it names."""
    seen: dict[str, set[str]] = {}
    for code in codelist.codes:
        for text in (code.code, *code.labels.values(), *code.synonyms):
            seen.setdefault(_simple_fold(text), set()).add(code.code)
    return seen


def written_code(dialect: Dialect, schema: CaseSchema, field_name: str, code: str) -> str:
    """How this dialect writes one code: an organisation's own word, a label, or the code itself
    when the label could name another code too (then a real organisation would have used codes)."""
    override = dialect.value_overrides.get(field_name, {}).get(code)
    if override is not None:
        return override
    if dialect.values is None:
        return code
    codelist = schema.codelist_of(schema.field(field_name))
    found = codelist.get(code)
    label = found.label(dialect.values) if found else code
    if _spellings(codelist).get(_simple_fold(label), {code}) != {code}:
        return code
    if not _fits(label, "utf-8" if dialect.encoding.startswith("utf") else dialect.encoding):
        return code
    return label

"""The mapping draft as an XLSX workbook with drop-down lists, and reading it back like the YAML.

Sheets: `columns` (your header -> field), `values` (your word -> code, a drop-down of the field's
codes with their labels in your language), `settings` (date order), and a hidden `lists` sheet the
drop-downs draw on. A chosen entry reads "code — label"; only the code counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casepool.core.errors import MappingError
from casepool.core.schema import CaseSchema, load_schema
from casepool.intake.mapping import MAPPING_VERSION, TODO, Draft

SEPARATOR = " — "
LEAVE_OUT = "(leave out)"
MISSING_ENTRY = "missing"
_SHEETS = ("columns", "values", "settings")


def _entry(code: str, label: str) -> str:
    return f"{code}{SEPARATOR}{label}"


def _cell_ref(col: int, row: int) -> str:
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


def write_mapping_workbook(
    draft: Draft, path: str | Path, lang: str = "en", schema: CaseSchema | None = None
) -> None:
    """Write the draft as a workbook whose code cells are drop-down lists."""
    import xlsxwriter

    schema = schema or load_schema()
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    workbook = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False})
    try:
        bold = workbook.add_format({"bold": True})
        lists = workbook.add_worksheet("lists")
        fields = [LEAVE_OUT, *schema.field_names]
        lists.write_column(0, 0, fields)
        ranges: dict[str, str] = {}
        coded = [f for f in schema.fields if f.codelist]
        for i, f in enumerate(coded, start=1):
            codelist = schema.codelist_of(f)
            entries = [_entry(c.code, c.label(lang)) for c in codelist.codes] + [MISSING_ENTRY]
            lists.write_column(0, i, entries)
            ranges[f.name] = f"=lists!{_abs(i, 0)}:{_abs(i, len(entries) - 1)}"
        lists.hide()

        columns = workbook.add_worksheet("columns")
        columns.write_row(0, 0, ["header", "field", "label", "note"], bold)
        for row, (header, target) in enumerate(draft.columns.items(), start=1):
            columns.write_string(row, 0, header)
            columns.write_string(row, 1, target or LEAVE_OUT)
            if target:
                columns.write_string(row, 2, schema.field(target).label(lang))
            if header in draft.personal_columns:
                columns.write_string(row, 3, "column looks personal: leave it unmapped")
            elif header in draft.asked:
                columns.write_string(row, 3, "which field? " + " / ".join(draft.asked[header]))
            columns.data_validation(
                row, 1, row, 1, {"validate": "list", "source": f"=lists!$A$1:$A${len(fields)}"}
            )
        columns.set_column(0, 0, 30)
        columns.set_column(1, 2, 28)

        values = workbook.add_worksheet("values")
        values.write_row(0, 0, ["field", "word", "cells", "code", "note"], bold)
        row = 1
        for field_name, words in draft.words.items():
            for w in words:
                values.write_string(row, 0, field_name)
                values.write_string(row, 1, w.word)
                values.write_number(row, 2, w.count)
                values.write_string(row, 3, TODO)
                if w.ambiguity is not None:
                    could = " / ".join(w.ambiguity.candidates) or "no answer"
                    values.write_string(row, 4, f"ambiguous: {could}")
                values.data_validation(
                    row, 3, row, 3, {"validate": "list", "source": ranges[field_name]}
                )
                row += 1
        values.set_column(0, 1, 28)
        values.set_column(3, 4, 36)

        settings = workbook.add_worksheet("settings")
        settings.write_row(0, 0, ["setting", "value"], bold)
        settings.write_row(1, 0, ["mapping_version", str(MAPPING_VERSION)])
        settings.write_row(2, 0, ["date_order", "dmy"])
        settings.data_validation(2, 1, 2, 1, {"validate": "list", "source": ["dmy", "mdy"]})
        if draft.detail_columns:
            settings.write_row(3, 0, ["detail column", "field", "code"], bold)
            for i, (header, d) in enumerate(draft.detail_columns.items(), start=4):
                settings.write_row(i, 0, [header, d.field, d.code])
        columns.activate()
    finally:
        workbook.close()
    tmp.replace(path)


def _abs(col: int, row: int) -> str:
    ref = _cell_ref(col, row)
    letters = "".join(c for c in ref if c.isalpha())
    digits = ref[len(letters) :]
    return f"${letters}${digits}"


def read_mapping_workbook(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The workbook as the same document a mapping YAML gives, and each entry's sheet row."""
    import fastexcel

    try:
        reader = fastexcel.read_excel(path)
    except Exception as exc:
        raise MappingError(
            "mapping-unreadable", path=path.name, reason="not a readable workbook"
        ) from exc
    missing = [s for s in _SHEETS if s not in reader.sheet_names]
    if missing:
        raise MappingError(
            "mapping-unreadable", path=path.name, reason=f"sheets missing: {', '.join(missing)}"
        )

    def rows(sheet: str) -> list[list[str | None]]:
        frame = reader.load_sheet(sheet, header_row=None, dtypes="string").to_polars()
        return [[None if v is None else str(v).strip() for v in r] for r in frame.iter_rows()]

    lines: dict[tuple[str, ...], int] = {}
    document: dict[str, Any] = {"columns": {}, "values": {}, "detail_columns": {}}
    for number, cells in enumerate(rows("columns")[1:], start=2):
        header, target = ([*cells, None, None])[:2]
        if not header:
            continue
        document["columns"][header] = None if target in (None, "", LEAVE_OUT) else target
        lines[("columns", header)] = number
    for number, cells in enumerate(rows("values")[1:], start=2):
        field_name, word, _count, code = ([*cells, None, None, None, None])[:4]
        if not field_name or word is None:
            continue
        if code is None:
            continue
        code = code.split(SEPARATOR, 1)[0].strip()  # TODO stays TODO: refused with its row
        document["values"].setdefault(field_name, {})[word] = code
        lines.setdefault(("values", field_name), number)
        lines[("values", field_name, word)] = number
    for number, cells in enumerate(rows("settings")[1:], start=2):
        key, value = ([*cells, None, None])[:2]
        if key == "date_order" and value:
            document["date_order"] = value
            lines[("date_order",)] = number
        elif key == "mapping_version" and value:
            document["mapping_version"] = int(float(value))
        elif key and key != "detail column" and len(cells) >= 3 and cells[1] and cells[2]:
            document["detail_columns"][key] = {"field": cells[1], "code": cells[2]}
    return document, lines

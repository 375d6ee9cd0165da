"""Reading the mapping workbook (drafted by mapping_draft.py) back as the YAML document.

Sheets: `columns` (your header -> field), `values` (your word -> code, a drop-down of the field's
codes with their labels in your language), `settings` (date order), and a hidden `lists` sheet the
drop-downs draw on. A chosen entry reads "code — label"; only the code counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casepool.core.errors import MappingError

SEPARATOR = " — "
LEAVE_OUT = "(leave out)"
MISSING_ENTRY = "missing"
_SHEETS = ("columns", "values", "settings")


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

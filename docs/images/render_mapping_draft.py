"""Render the `values` sheet of a real mapping draft as the picture in data-officer-guide.md.

Run: .venv/bin/python docs/images/render_mapping_draft.py (needs /usr/bin/chromium). The sheet's
cells and the drop-down entries are read back from the workbook `mapping init` wrote; the page
draws them the way a spreadsheet shows them, with the first drop-down open.
"""

from __future__ import annotations

import html
import subprocess
import tempfile
from pathlib import Path

import fastexcel

from casepool.intake.mapping_draft import draft_export

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "tests" / "fixtures" / "intake" / "na_in_yes_no_columns.csv"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        workbook = Path(folder) / "mapping.xlsx"
        _, _, write = draft_export(EXPORT)
        write(workbook, "ar")
        reader = fastexcel.read_excel(workbook)
        values = reader.load_sheet("values", header_row=None, dtypes="string").to_polars()
        lists = reader.load_sheet("lists", header_row=None, dtypes="string").to_polars()
        columns = reader.load_sheet("columns", header_row=None, dtypes="string").to_polars()
    from casepool.core.schema import load_schema

    rows = [list(r) for r in values.iter_rows()]
    coded = [f.name for f in load_schema().fields if f.codelist]
    first_field = rows[1][0]
    choices = [c for c in lists.to_series(1 + coded.index(first_field)).to_list() if c]
    menu = "".join(f"<li>{html.escape(c)}</li>" for c in choices)

    def cell(value: object, row: int, col: int) -> str:
        text = html.escape(str(value or ""))
        if row == 1 and col == 3:
            return f'<td class="open">{text} ▾<ul class="menu">{menu}</ul></td>'
        return f"<td>{text}</td>"

    cells = "".join(
        "<tr>" + "".join(cell(c, i, j) for j, c in enumerate(row)) + "</tr>"
        for i, row in enumerate(rows)
    )
    column_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in row) + "</tr>"
        for row in columns.iter_rows()
    )
    page = f"""<!doctype html><meta charset="utf-8"><style>
body{{font:14px 'Noto Sans',sans-serif;margin:16px;background:#fff}}
h2{{font-size:14px;margin:14px 0 4px}}
table{{border-collapse:collapse}} td{{border:1px solid #ccc;padding:3px 8px;min-width:60px}}
tr:first-child td{{background:#eee;font-weight:bold}}
td.open{{position:relative;outline:2px solid #3a7}}
.menu{{position:absolute;left:0;top:100%;z-index:2;border:1px solid #888;background:#fff;
list-style:none;padding:0;margin:0;box-shadow:2px 2px 6px #999}}
.menu li{{padding:2px 10px;white-space:nowrap}} .menu li:first-child{{background:#cde}}
</style><h2>values</h2><table>{cells}</table>
<h2>columns</h2><table>{column_rows}</table>"""
    with tempfile.TemporaryDirectory() as folder:
        page_path = Path(folder) / "page.html"
        page_path.write_text(page, encoding="utf-8")
        target = ROOT / "docs" / "images" / "mapping-draft-values.png"
        subprocess.run(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={target}",
                "--window-size=1000,560",
                page_path.as_uri(),
            ],
            check=True,
            capture_output=True,
        )


if __name__ == "__main__":
    main()

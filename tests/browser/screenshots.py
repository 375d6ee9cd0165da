"""Regenerates the screenshots of docs/analyst-report-guide.md from reports already written.

    .venv/bin/python tests/browser/screenshots.py REPORT_DIR docs/images

REPORT_DIR holds report-en.html, report-ar.html and report-ckb.html (e.g. from `casepool report`
on a warehouse of a few thousand synthetic records). Each shot frames the report in a page at the
given width, so a phone's 390 px can be shown although headless windows are at least 500 px wide.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browser import chromium

SHOTS = (  # (report, fragment, frame width, height, image name)
    ("report-en.html", "", 1000, 1250, "report-en-desktop.png"),
    ("report-ar.html", "", 1000, 1250, "report-ar-desktop.png"),
    ("report-en.html", "#sex-age", 1000, 1100, "report-en-suppressed.png"),
    ("report-en.html", "#justice", 1000, 1000, "report-en-justice.png"),
    ("report-ckb.html", "", 390, 1100, "report-ckb-phone.png"),
)


def main(reports: Path, images: Path) -> None:
    images.mkdir(parents=True, exist_ok=True)
    for name, fragment, width, height, image in SHOTS:
        host = reports / f"frame-{width}-{image}.html"
        host.write_text(
            f'<body style="margin:0;background:#fff"><iframe src="{name}{fragment}" '
            f'width="{width}" height="{height}" style="border:0;display:block"></iframe></body>',
            "utf-8",
        )
        run = chromium.run(
            host,
            f"--screenshot={images / image}",
            "--virtual-time-budget=3000",
            width=max(width, 500),
            height=height,
        )
        host.unlink()
        print(images / image, "console:", run.console or "clean")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

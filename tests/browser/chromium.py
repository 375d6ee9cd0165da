"""Drives Debian's headless Chromium for the report's browser tests (installed by setup.sh)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE = re.compile(r":CONSOLE[(:]\d+|Uncaught|Refused to|Failed to load resource")

# Written into a copy of the report (never into the report itself, which holds no script): the
# facts of the laid-out page a screenshot cannot give exactly.
PROBE = """<script>
document.fonts.ready.then(() => {
  const root = document.documentElement, range = document.createRange();
  range.selectNodeContents(document.querySelector('h2'));
  const h2 = range.getBoundingClientRect();
  const facts = {
    direction: getComputedStyle(document.body).direction,
    scrollWidth: root.scrollWidth, innerWidth: window.innerWidth,
    h2Left: h2.left, h2Right: h2.right,
    charts: [...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().width),
    tables: document.querySelectorAll('table').length,
    fonts: [...document.fonts].map(f => f.family + ' ' + f.weight + ' ' + f.status),
  };
  parent.postMessage(JSON.stringify(facts), '*');
});
</script>"""


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Run:
    stdout: str
    stderr: str

    @property
    def console(self) -> list[str]:
        """Console messages and refused requests the page caused."""
        return [line for line in self.stderr.splitlines() if CONSOLE.search(line)]


def run(page: Path, *extra: str, width: int = 1200, height: int = 1600) -> Run:
    with tempfile.TemporaryDirectory(prefix="casepool-chromium-") as profile:
        done = subprocess.run(
            [
                binary() or "chromium",
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                *extra,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    return Run(done.stdout, done.stderr)


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600) -> Run:
    return run(page, f"--screenshot={png}", width=width, height=height)


def probe(page: Path, folder: Path, width: int) -> dict:
    """Layout facts of `page` in a frame `width` CSS pixels wide, as on a phone.

    Headless windows are at least 500 px wide, so the copy of the report (which allows only its
    own probe script) is framed at the phone's width; the probe hands its facts to the host page.
    """
    html = page.read_text("utf-8")
    html = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    copy = folder / f"probe-{page.name}"
    copy.write_text(html.replace("</body>", PROBE + "</body>"), "utf-8")
    host = folder / f"host-{width}-{page.name}"
    host.write_text(
        f'<body style="margin:0"><iframe id="f" src="{copy.name}" width="{width}" height="900" '
        'style="border:0"></iframe><script>window.addEventListener("message", e => {'
        'const p = document.createElement("pre"); p.id = "probe"; p.textContent = e.data;'
        "document.body.appendChild(p);});</script></body>",
        "utf-8",
    )
    result = run(host, "--dump-dom", "--virtual-time-budget=8000", width=1000, height=1000)
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    if not found:
        raise AssertionError("the probe did not run: " + "\n".join(result.console))
    return json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))


def read_png(path: Path, max_rows: int = 10**9) -> tuple[int, int, list[bytes]]:
    """Width, height and the first RGB rows of an 8-bit, non-interlaced PNG (as Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(min(height, max_rows)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        previous = line
        rgb = bytes(line) if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3)
        rows.append(rgb)
    return width, height, rows

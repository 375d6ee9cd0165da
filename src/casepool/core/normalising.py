"""Normalise what exports really hold: digit scripts, Arabic letter variants, dates, multi-select cells."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

# Arabic-Indic (U+0660..0669) and Persian/Extended (U+06F0..06F9) digits to ASCII.
_DIGITS = {chr(0x0660 + i): str(i) for i in range(10)} | {
    chr(0x06F0 + i): str(i) for i in range(10)
}
DIGIT_SOURCES = list(_DIGITS)
DIGIT_TARGETS = list(_DIGITS.values())

# Letter variants folded for matching only (both sides of a comparison go through the same fold).
_LETTERS = {
    "ک": "ك",  # Kurdish/Persian keheh -> Arabic kaf
    "ی": "ي",  # Farsi yeh -> Arabic yeh
    "ى": "ي",  # alef maksura
    "ئ": "ي",
    "ة": "ه",  # teh marbuta
    "ە": "ه",  # Kurdish ae
    "ھ": "ه",  # heh doachashmee
    "ۀ": "ه",
    "أ": "ا",
    "إ": "ا",
    "آ": "ا",
    "ٱ": "ا",
    "ؤ": "و",
    "ـ": "",  # tatweel
    "\u200c": "",  # zero-width non-joiner (common in Kurdish and Persian typing)
    "\u200d": "",
    "\u200e": "",  # left-to-right mark
    "\u200f": "",  # right-to-left mark
    "\u061c": "",  # Arabic letter mark
    "\ufeff": "",  # stray BOM
    "\u00a0": " ",
}
_DIACRITICS = re.compile("[\u064b-\u065f\u0670\u06d6-\u06ed]")
# Latin accents (Kurmanji ê î û ç ş) are often typed without them: "bele" is "belê".
_LATIN_ACCENTS = re.compile("[\u0300-\u036f]")
_SPACES = re.compile(r"[\s_\-]+")
_FOLD = str.maketrans(_DIGITS | _LETTERS)

# Separators of multi-select cells that never occur inside a label.
_STRONG_SEPARATORS = re.compile(r"[,;،؛|/\n]+")


def ascii_digits(text: str) -> str:
    """Arabic-Indic and Persian digits as ASCII digits."""
    return text.translate(_FOLD) if any(c in _DIGITS for c in text) else text


def fold(text: str) -> str:
    """The matching key of a label or cell: case, spacing, digits and Arabic-script variants folded."""
    text = text.translate(_FOLD).casefold()
    if not text.isascii():
        text = _LATIN_ACCENTS.sub("", unicodedata.normalize("NFD", text))
    text = _DIACRITICS.sub("", text)
    return _SPACES.sub(" ", text).strip()


def split_multi(text: str) -> list[list[str]]:
    """A multi-select cell as parts (split on , ; ، | newline), each part as its whitespace tokens."""
    parts = [p.strip() for p in _STRONG_SEPARATORS.split(text)]
    return [p.split() for p in parts if p]


# --- numbers ---------------------------------------------------------------------------------

_INTEGER = re.compile(r"^[+-]?\d+(?:\.0*)?$")


def parse_integer(text: str) -> int | None:
    """A whole number written with any digit script, '12', ' 12 ', '12.0'; None if it is not one."""
    cleaned = ascii_digits(text).strip().replace("٫", ".")
    if not _INTEGER.match(cleaned):
        return None
    return int(cleaned.split(".")[0])


# --- dates -----------------------------------------------------------------------------------

EARLIEST = date(1990, 1, 1)
_EXCEL_EPOCH = date(1899, 12, 30)  # Excel's day 0; its fictitious 1900-02-29 lies before our window
_SERIAL_MIN = (EARLIEST - _EXCEL_EPOCH).days
_SERIAL_MAX = (date(2099, 12, 31) - _EXCEL_EPOCH).days
_ISO = re.compile(
    r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
)
_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})(?: \d{1,2}:\d{2}(?::\d{2})?)?$")
_YEAR_MONTH = re.compile(r"^(\d{4})[-/.](\d{1,2})$")
_MONTH_YEAR = re.compile(r"^(\d{1,2})[-/.](\d{4})$")
_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _full_year(year: int, digits: int, today: date) -> int:
    """Two-digit years fall in the window that ends this year: '23' is 2023, '95' is 1995."""
    if digits == 4:
        return year
    pivot = today.year % 100
    return 2000 + year if year <= pivot else 1900 + year


def parse_date(text: str, *, day_first: bool = True, today: date | None = None) -> date | None:
    """A date from ISO, dd/mm/yyyy (or mm/dd with day_first=False), d/m/yy, yyyy-mm, mm/yyyy or an
    Excel serial number, in any digit script; None when unreadable or before 1990 (implausible).

    Month-only values give the first day of the month.
    """
    today = today or date.today()
    cleaned = ascii_digits(text).strip()
    result: date | None = None
    if match := _ISO.match(cleaned):
        result = _safe_date(int(match[1]), int(match[2]), int(match[3]))
    elif match := _DMY.match(cleaned):
        first, second = int(match[1]), int(match[2])
        day, month = (first, second) if day_first else (second, first)
        year = _full_year(int(match[3]), len(match[3]), today)
        result = _safe_date(year, month, day)
    elif match := _YEAR_MONTH.match(cleaned):
        result = _safe_date(int(match[1]), int(match[2]), 1)
    elif match := _MONTH_YEAR.match(cleaned):
        result = _safe_date(int(match[2]), int(match[1]), 1)
    elif _SERIAL.match(cleaned):
        serial = int(float(cleaned))
        if _SERIAL_MIN <= serial <= _SERIAL_MAX:
            result = _EXCEL_EPOCH + timedelta(days=serial)
    if result is None or result < EARLIEST:
        return None
    return result


def age_at(birth: date, when: date) -> int:
    """Completed years of age on a given day."""
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))

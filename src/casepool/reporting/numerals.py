"""Numbers as readers of each language write them: digits, separators, percent sign.

Arabic (ar) and Sorani (ckb) readers in Iraq expect Arabic-Indic digits (U+0660-0669) with the
Arabic decimal and thousands separators, as Iraqi ministries and Kurdish Region institutions print
them (CLDR's ar-IQ and ckb-IQ defaults). Kurmanji (kmr) is written in Latin script and keeps
European digits with CLDR's `ku` separators (1.234,5). English uses 1,234.5.
"""

from __future__ import annotations

from dataclasses import dataclass

LATIN_DIGITS = "0123456789"
ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"


@dataclass(frozen=True)
class NumberStyle:
    """How one language writes numbers."""

    digits: str
    decimal: str
    group: str
    percent: str  # template with {n}
    minus: str
    plus: str


# U+061C (Arabic letter mark) keeps a sign next to Arabic-Indic digits in right-to-left text.
_ALM = "\u061c"
STYLES: dict[str, NumberStyle] = {
    "en": NumberStyle(LATIN_DIGITS, ".", ",", "{n}%", "−", "+"),
    "kmr": NumberStyle(LATIN_DIGITS, ",", ".", "%{n}", "−", "+"),
    "ar": NumberStyle(ARABIC_INDIC_DIGITS, "٫", "٬", "{n}٪", _ALM + "-", _ALM + "+"),
    "ckb": NumberStyle(ARABIC_INDIC_DIGITS, "٫", "٬", "{n}٪", _ALM + "-", _ALM + "+"),
}


def style_of(lang: str) -> NumberStyle:
    return STYLES.get(lang, STYLES["en"])


def localise_digits(text: str, lang: str) -> str:
    """Replace European digits in `text` with the language's digits (years, periods, ages)."""
    digits = style_of(lang).digits
    if digits == LATIN_DIGITS:
        return text
    return text.translate(str.maketrans(LATIN_DIGITS, digits))


def format_number(value: float, lang: str, decimals: int = 0) -> str:
    """`value` with grouping and `decimals` places, in the language's digits and separators."""
    style = style_of(lang)
    negative = value < 0
    text = f"{abs(value):,.{decimals}f}"
    text = text.replace(",", "\0").replace(".", style.decimal).replace("\0", style.group)
    text = localise_digits(text, lang)
    return (style.minus + text) if negative else text


def format_percent(value: float, lang: str, decimals: int = 1) -> str:
    """A percentage (value already in %), e.g. 12.5 -> "12.5%" or "١٢٫٥٪"."""
    return style_of(lang).percent.format(n=format_number(value, lang, decimals))


def format_signed(value: float, lang: str, decimals: int = 0, percent: bool = False) -> str:
    """A change with its sign always shown: +12, −3, +1.5%."""
    style = style_of(lang)
    magnitude = format_number(abs(value), lang, decimals)
    if percent:
        magnitude = style.percent.format(n=magnitude)
    if round(value, decimals) == 0:
        return magnitude
    return (style.plus if value > 0 else style.minus) + magnitude


def parse_number(text: str, lang: str) -> float:
    """The inverse of `format_number` / `format_percent` (for tests and copy-paste checks)."""
    style = style_of(lang)
    cleaned = text.strip().replace(_ALM, "")
    for mark in ("%", "٪", "+"):
        cleaned = cleaned.replace(mark, "")
    negative = cleaned.startswith(("-", "−"))
    cleaned = cleaned.lstrip("-−")
    cleaned = cleaned.translate(str.maketrans(style.digits, LATIN_DIGITS))
    cleaned = cleaned.replace(style.group, "").replace(style.decimal, ".")
    number = float(cleaned)
    return -number if negative else number

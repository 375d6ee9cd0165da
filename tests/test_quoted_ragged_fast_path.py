"""The quoted-file fast path of the ragged-row check agrees with the csv module, record by record.

`_quoted_records_if_even` may only answer "no record has too few cells, N records" when the
csv module (the exact path) says the same; whenever it is unsure it must answer None.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from casepool.core.errors import UnreadableFileError
from casepool.core.reading import _cells_even, _quoted_records_if_even, _ragged_rows

CELLS = st.sampled_from(
    [
        "x",
        "12",
        "",
        " ",
        '"a,b"',
        '"line\nbreak"',
        '"say ""hi"""',
        '""',
        '"crlf\r\nin"',
        'in"side',
        '"open',
        'close"',
        '"q"x',
        ' "s"',
        "عربي",
        '"عربي, نص"',
    ]
)
ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def csv_texts(draw: st.DrawFn) -> tuple[str, str]:
    separator = draw(st.sampled_from([",", ";"]))
    width = draw(st.integers(1, 4))
    lines = [separator.join(f"h{i}" for i in range(width))]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", " ", '""'])))
            continue
        cells = draw(st.lists(CELLS, min_size=1, max_size=width))  # never too many
        lines.append(separator.join(cells).replace(",", separator))
    end = draw(ENDS)
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text, separator


def exact(data: bytes, separator: str) -> tuple[list[tuple[int, int, int]], int] | str:
    """The csv module's verdict (the fast path switched off), or the refusal's key."""
    try:
        ragged, records = _ragged_rows(Path("x.csv"), io.BytesIO(data), separator, none_long=False)
    except UnreadableFileError as exc:
        return exc.key
    return [(r.row, r.found, r.expected) for r in ragged], records


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_texts())
@example(('h0,h1\n"a,b",c\n"x""y",\n', ","))
@example(('h0,h1\n"a\nb",c\nd\n', ","))
@example(("h0,h1\n\n\n\nx,y\n", ","))
def test_the_fast_path_never_answers_what_the_csv_module_would_not(case):
    text, separator = case
    data = text.encode("utf-8")
    verdict = exact(data, separator)
    fast = _quoted_records_if_even(data, separator)
    if isinstance(verdict, tuple) and any(found > expected for _, found, expected in verdict[0]):
        return  # a record with too many cells: polars refuses those before this check runs
    if fast is not None:
        assert verdict == ([], fast)
    if _cells_even(data, separator):  # the check of a batch, quoted or not
        assert verdict[0] == [] if isinstance(verdict, tuple) else False


@pytest.mark.parametrize(
    "text",
    [
        'h0,h1\n"a,b",c\n"x""y",\n"",z\n',
        'h0,h1\r\n"a\r\nb",c\r\nd,"e"\r\n',
        '\ufeff"h0","h1"\n1,2\n\n3,"4"',
    ],
)
def test_ordinary_quoted_files_take_the_fast_path(text):
    data = text.encode("utf-8")
    fast = _quoted_records_if_even(data, ",")
    assert fast is not None
    assert exact(data, ",") == ([], fast)


@pytest.mark.parametrize(
    "text",
    [
        'h0,h1\n"a,b"\nc,d\n',  # a short record
        'h0,h1\n"a,b,c\n',  # a quote never closed
        'h0,h1\n"a"b,c\n',  # a character after the closing quote
        'h0,h1\n \n"a",b\n',  # a blank-looking line the csv module skips: exact path decides
    ],
)
def test_anything_unusual_goes_to_the_exact_path(text):
    assert _quoted_records_if_even(text.encode("utf-8"), ",") is None


def _old_without_blank_rows(frame):
    import polars as pl

    cells = [c for c in frame.columns if c != "_row"]
    blank = pl.all_horizontal(
        pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in cells
    )
    return frame.filter(~blank)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([None, "", " ", "\t", "x", " y "]), min_size=3, max_size=3),
        max_size=12,
    ),
    st.integers(1, 3),
)
def test_blank_rows_are_left_out_as_before(rows, width):
    import polars as pl

    from casepool.core.reading import ROW, without_blank_rows

    frame = pl.DataFrame(
        {f"c{i}": [r[i] for r in rows] for i in range(width)},
        schema={f"c{i}": pl.String for i in range(width)},
    ).with_columns(pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias(ROW))
    assert without_blank_rows(frame).equals(_old_without_blank_rows(frame))

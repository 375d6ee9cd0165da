"""A CSV in another encoding than UTF-8 is transcoded as it is read in batches, not whole in
memory: the same bytes, the same validation, characters cut between two reads finished."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import casepool.core.reading as reading
from casepool.core.errors import UnreadableFileError
from casepool.intake.validating import validate_export

FIXTURES = Path(__file__).parent / "fixtures"
TODAY = date(2026, 1, 15)
TEXT = st.text(alphabet='abc,\n"é ذكر أنثى ١٢٣ ژ', max_size=60)


@pytest.mark.parametrize("encoding", ["cp1256", "utf-16", "utf-16-le", "utf-8-sig"])
@settings(max_examples=40, deadline=None)
@given(text=TEXT, size=st.integers(1, 9), bom=st.booleans())
def test_the_reader_gives_the_whole_transcoding_a_block_at_a_time(
    tmp_path_factory, encoding, text, size, bom
):
    if encoding == "cp1256":
        text = text.replace("ژ", "").replace("١", "").replace("٢", "").replace("٣", "")  # not in it
    path = tmp_path_factory.mktemp("t") / "x.csv"
    path.write_bytes(
        (("\ufeff" if bom and encoding == "utf-16-le" else "") + text).encode(encoding)
    )
    source = reading._Transcoded(path, encoding, "")
    reader = source.open()
    pieces = []
    while piece := reader.read(size):
        pieces.append(piece)
    reader.close()
    assert b"".join(pieces) == source.whole().getvalue()


def test_an_undecodable_byte_is_refused_as_the_whole_file_refuses_it(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16-le") + b"\x00\xd8")  # a lone surrogate at the end
    reader = reading._Transcoded(path, "utf-16-le", "").open()
    with pytest.raises(UnreadableFileError) as caught:
        try:
            while reader.read(4):
                pass
        finally:
            reader.close()
    assert caught.value.key == "file-undecodable"


@pytest.mark.parametrize(
    "name", ["cp1256_arabic_headers.csv", "utf16_tab_separated.txt", "utf8_bom_semicolon.csv"]
)
def test_small_reads_validate_as_the_whole_file(monkeypatch, name):
    """Reads of a few bytes: batches cut inside characters and records all the same."""
    export = FIXTURES / "validate" / name
    whole = validate_export(export, today=TODAY, batch_rows=None)
    monkeypatch.setattr(reading, "_READ_BYTES", 7)
    batched = validate_export(export, today=TODAY, batch_rows=2)
    assert batched.export.batched
    assert batched.to_dict() == whole.to_dict()
    assert batched.records.equals(whole.records)

"""Parsed schema files are kept in the user's cache, named by their text's SHA-256: the same
data as parsing, a changed file parsed again, a broken or unwritable cache never in the way."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import pytest

from casepool.core import resources
from casepool.core.resources import load_yaml, schemas_dir


def _schema_files() -> list[str]:
    root = schemas_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CASEPOOL_CACHE_DIR", str(folder))
    return folder


def _parsed(name: str) -> object:
    import yaml

    text = (schemas_dir() / name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_every_schema_file_gives_what_parsing_gives(cache, monkeypatch):
    names = _schema_files()
    assert len(names) > 20
    first = {name: load_yaml(name) for name in names}
    assert len(list(cache.iterdir())) > 20
    monkeypatch.setitem(sys.modules, "yaml", None)  # a cache hit never imports PyYAML
    for name in names:
        try:
            again = load_yaml(name)
        except ImportError:  # not kept (a date, say): parsed each time
            continue
        assert again == first[name], name
    monkeypatch.delitem(sys.modules, "yaml")
    for name in names:
        assert load_yaml(name) == _parsed(name) == first[name], name


def test_a_changed_file_is_parsed_again(cache, tmp_path, monkeypatch):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    monkeypatch.setenv("CASEPOOL_SCHEMAS", str(schemas))
    (schemas / "x.yaml").write_text("a: 1\n", encoding="utf-8")
    assert load_yaml("x.yaml") == {"a": 1}
    stat = (schemas / "x.yaml").stat()
    (schemas / "x.yaml").write_text("a: 2\n", encoding="utf-8")
    os.utime(schemas / "x.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time
    assert load_yaml("x.yaml") == {"a": 2}
    (schemas / "x.yaml").write_text("a: 1\n", encoding="utf-8")
    assert load_yaml("x.yaml") == {"a": 1}


def test_broken_entries_and_unusual_values_are_parsed(cache, tmp_path, monkeypatch):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    monkeypatch.setenv("CASEPOOL_SCHEMAS", str(schemas))
    (schemas / "d.yaml").write_text("when: 2025-01-02\nnan: .nan\n", encoding="utf-8")
    (schemas / "b.yaml").write_text("- x\n", encoding="utf-8")
    assert load_yaml("d.yaml")["when"] == date(2025, 1, 2)
    assert load_yaml("d.yaml")["when"] == date(2025, 1, 2)
    assert load_yaml("b.yaml") == ["x"]
    entries = list(cache.iterdir())
    assert len(entries) == 1  # the date (and NaN) file is not kept
    entries[0].write_bytes(b"\x00garbage")
    assert load_yaml("b.yaml") == ["x"]
    entries[0].write_bytes(b"")
    assert load_yaml("b.yaml") == ["x"]


def test_no_cache_or_an_unwritable_one_is_never_in_the_way(tmp_path, monkeypatch):
    monkeypatch.setenv("CASEPOOL_CACHE_DIR", "")
    assert resources.cache_dir() is None
    assert load_yaml("case_record.yaml") == _parsed("case_record.yaml")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("CASEPOOL_CACHE_DIR", str(blocked / "cache"))
    assert load_yaml("case_record.yaml") == _parsed("case_record.yaml")


def test_bad_yaml_is_still_refused_with_its_reason(cache, tmp_path, monkeypatch):
    from casepool.core.errors import SchemaError
    from casepool.core.schema import read_yaml

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    monkeypatch.setenv("CASEPOOL_SCHEMAS", str(schemas))
    (schemas / "bad.yaml").write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(SchemaError) as refused:
        read_yaml("bad.yaml")
    assert refused.value.key == "schema-invalid"
    with pytest.raises(SchemaError) as missing:
        read_yaml("nope.yaml")
    assert missing.value.key == "schema-missing"

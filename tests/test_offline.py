"""Privacy invariant 6: casepool never touches the network, over the whole path."""

from __future__ import annotations

import socket

import pytest

from casepool.demo import run_demo


class NetworkUsed(AssertionError):
    """Raised by the guard when anything tries to reach another machine."""


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise NetworkUsed(f"network access attempted: {args[:2]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_the_whole_demo_path_runs_with_the_network_cut(tmp_path, no_network):
    result = run_demo(tmp_path / "demo", orgs=2, records=200, seed=3)
    assert result.cases_in_warehouse > 0
    assert no_network == []


def test_the_guard_itself_catches_a_connection(no_network):
    with pytest.raises(NetworkUsed):
        socket.create_connection(("192.0.2.1", 80))
    assert len(no_network) == 1

"""Privacy invariant 6: casepool never touches the network, over the whole path."""

from __future__ import annotations

import socket

import pytest

from fixtures.offline import NetworkUsed, cut_network


@pytest.fixture
def no_network(monkeypatch):
    return cut_network(monkeypatch)


def test_the_whole_demo_path_runs_with_the_network_cut(demo_run):
    # conftest's session fixture runs the whole demo (synth to report) under cut_network.
    assert demo_run.guard_held  # the guard was still in place when the run ended
    assert demo_run.stages[-2:] == ("publish", "report")  # every stage ran under it
    assert demo_run.result.cases_in_warehouse > 0
    assert demo_run.network_attempts == ()


def test_the_guard_itself_catches_a_connection(no_network):
    with pytest.raises(NetworkUsed):
        socket.create_connection(("192.0.2.1", 80))
    assert len(no_network) == 1

"""The blend kernels' warm-up in a second process: it fills numba's cache and records it once."""

from __future__ import annotations

import pytest

from ensemble import _warmup
from ensemble.predict import cpu


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty numba cache and no child started by this process yet."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ENS_NO_NUMBA", raising=False)
    monkeypatch.setattr(_warmup, "_child", None)
    monkeypatch.setattr(_warmup, "_ready", set())
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle core for the child
    monkeypatch.setattr(cpu, "others_running", lambda: 0.0)  # only the command runs
    monkeypatch.setattr(_warmup.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    return tmp_path


def test_a_cold_cache_warms_in_a_child_once(fresh, monkeypatch):
    stamp = _warmup.stamp_path("blend")
    assert stamp is not None and stamp.parent == fresh and not stamp.exists()
    assert _warmup.start("blend")
    _warmup.wait("line_search")  # returns once the child has said it
    assert "line_search" in _warmup._ready
    assert _warmup._child.wait(timeout=300) == 0
    assert stamp.exists()
    assert any(fresh.rglob("*.nbi"))  # numba's index of the kernels the child compiled
    monkeypatch.setattr(_warmup, "_child", None)
    assert not _warmup.start("blend")  # the stamp says the cache holds them: no second child


def test_no_child_without_numba_or_for_commands_without_kernels(fresh, monkeypatch):
    assert not _warmup.start("oof-report")
    monkeypatch.setenv("ENS_NO_NUMBA", "1")
    assert not _warmup.start("blend")
    _warmup.wait("line_search")  # nothing started: returns at once


def test_no_child_when_no_core_is_idle(fresh, monkeypatch):
    # a busy machine: the child's compile would only compete with the command (measured slower)
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert not _warmup.start("blend")
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    monkeypatch.setattr(cpu, "others_running", lambda: 1.0)  # one other process on the 2 cores right now
    assert not _warmup.start("blend")
    monkeypatch.setattr(_warmup.sys, "platform", "darwin")  # no running count: the load alone decides
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (0.9, 0.9, 0.9))
    assert not _warmup.start("blend")
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    monkeypatch.setattr(_warmup.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert _warmup.start("blend")
    assert _warmup._child.wait(timeout=300) == 0


def test_a_core_idle_now_warms_even_after_a_busy_minute(fresh, monkeypatch):
    # the benchmark's (or the user's) earlier commands raise the minute's load; nothing else runs now
    monkeypatch.setattr(_warmup.os, "getloadavg", lambda: (0.9, 0.9, 0.9))
    monkeypatch.setattr(cpu, "others_running", lambda: 0.0)
    assert _warmup.start("blend")
    assert _warmup._child.wait(timeout=300) == 0

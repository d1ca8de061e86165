"""The OpenMP wait policy chosen from the load: passive only when the cores are oversubscribed."""

from __future__ import annotations

import pytest

from ensemble.predict import cpu


@pytest.mark.parametrize(("cores", "others", "threads", "expected"), [
    (2, 0, None, None),        # a free machine: threads may spin
    (2, 1, None, cpu.PASSIVE),  # one busy process beside 2 threads on 2 cores
    (2, 1, 1, None),           # OMP_NUM_THREADS=1 leaves it a core
    (2, 3, 1, None),           # one thread starts no OpenMP workers: nothing to put to sleep (torchrun's ranks)
    (16, 1, 8, None),
    (16, 9, 8, cpu.PASSIVE),
    (1, 0.5, None, cpu.PASSIVE),
])
def test_wait_policy(cores, others, threads, expected):
    assert cpu.wait_policy(cores, others, threads) == expected


def _stat(tmp_path, running: int):
    path = tmp_path / "stat"
    path.write_text(f"cpu  1 2 3 4\nctxt 10\nprocs_running {running}\nprocs_blocked 0\n", encoding="ascii")
    return str(path)


def test_others_running_counts_every_runnable_task_but_this_one(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: cpu.usable_cores())
    assert cpu.others_running(samples=3, interval=0, stat=_stat(tmp_path, 3)) == 2
    assert cpu.others_running(samples=1, stat=_stat(tmp_path, 1)) == 0


def test_others_running_scales_to_the_affinity_share(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 8)
    assert cpu.others_running(samples=1, stat=_stat(tmp_path, 9)) == 2.0


def test_others_running_is_zero_where_unknown(tmp_path):
    assert cpu.others_running(samples=1, stat=str(tmp_path / "absent")) == 0.0
    (tmp_path / "odd").write_text("cpu 1 2\n", encoding="ascii")
    assert cpu.others_running(samples=1, stat=str(tmp_path / "odd")) == 0.0


def test_choose_wait_policy_honours_omp_num_threads(monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 4)
    monkeypatch.setattr(cpu, "others_running", lambda: 2.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu.choose_wait_policy() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu.choose_wait_policy() == cpu.PASSIVE
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu.choose_wait_policy() == cpu.PASSIVE

"""Distributed `ens predict`: torchrun ranks (Gloo on the CPU) against a single-process run.

The single-process oracle runs with one compute thread, as every torchrun rank does by default
(OMP_NUM_THREADS=1): CPU kernels may round differently with another thread count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.errors import ConfigError, DistributedError
from ensemble.predict import predict
from ensemble.predict.distributed import Session, assign
from tests.predict._data_helpers import write_data

FAULTS = Path(__file__).with_name("_torchrun_faults.py")


def torchrun(*args: str, fault: tuple[int, str] | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2` of `ens` (or of the fault-injecting wrapper)."""
    # no OpenMP wait policy inherited from an earlier in-process test (the ranks choose their own)
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    target = ["-m", "ensemble"]
    if fault:
        env.update(ENS_TEST_RANK=str(fault[0]), ENS_TEST_FAULT=fault[1])
        target = [str(FAULTS)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target,
           "predict", *args, "--workers", "0"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tables(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file() and ".parts" not in p.parts}


def assert_same_outputs(single: Path, multi: Path) -> None:
    a, b = tables(single), tables(multi)
    assert sorted(a) == sorted(b) and any(k.endswith(".csv") for k in a)
    for name in a:
        if name.endswith(".csv"):
            assert a[name].read_bytes() == b[name].read_bytes(), name
        elif name.endswith(".json"):  # sidecars: everything but the creation time
            ja, jb = (json.loads(p.read_text()) for p in (a[name], b[name]))
            ja.pop("created", None), jb.pop("created", None)
            assert ja == jb, name
        elif name.endswith(".npz"):
            with np.load(a[name]) as za, np.load(b[name]) as zb:
                assert sorted(za.files) == sorted(zb.files)
                assert all(np.array_equal(za[k], zb[k]) for k in za.files), name


def no_leftovers(out: Path) -> None:
    assert not list(out.rglob("*.csv")) and not list(out.rglob("*.tmp")), sorted(out.rglob("*"))


def test_two_ranks_write_the_single_process_tables_and_resume_per_rank(tmp_path, tiny_card, tiny_effnet_card, one_thread):
    csv = write_data(tmp_path, 20, folds=None)
    args = ["--card", str(tiny_card), "--card", str(tiny_effnet_card), "--data", str(csv), "--split", "test",
            "--tta", "hflip", "--save-views"]
    predict([tiny_card, tiny_effnet_card], csv, split="test", tta="hflip", save_views=True, workers=0,
            out_dir=tmp_path / "single")
    r = torchrun(*args, "--out", str(tmp_path / "multi"), "--json", str(tmp_path / "run.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_outputs(tmp_path / "single", tmp_path / "multi")
    assert r.stdout.count("ens predict (test)") == 1  # rank 0 alone reports
    # both ranks stored their parts: without the tables, a rerun reuses every part
    parts = sorted((tmp_path / "multi").rglob(".parts/*.npz"))
    assert len(parts) == 3 + 2
    for p in tables(tmp_path / "multi").values():
        p.unlink()
    r = torchrun(*args, "--out", str(tmp_path / "multi"), "--json", str(tmp_path / "rerun.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert {t["status"] for t in json.loads((tmp_path / "rerun.json").read_text())["tables"]} == {"reused"}
    assert_same_outputs(tmp_path / "single", tmp_path / "multi")


def test_two_ranks_split_oof_by_fold_like_one_process(tmp_path, tiny_card, one_thread):
    csv = write_data(tmp_path, 30, folds=3)
    predict(tiny_card, csv, split="oof", workers=0, out_dir=tmp_path / "single")
    r = torchrun("--card", str(tiny_card), "--data", str(csv), "--split", "oof", "--out", str(tmp_path / "multi"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_outputs(tmp_path / "single", tmp_path / "multi")


def test_a_rank_error_fails_every_rank_with_one_line_naming_it(tmp_path, tiny_card):
    csv = write_data(tmp_path, 12, folds=3)
    r = torchrun("--card", str(tiny_card), "--data", str(csv), "--split", "oof", "--out", str(tmp_path / "out"),
                 fault=(1, "error"))
    assert r.returncode != 0
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert ours == ["error: rank 1 failed while predicting: injected failure: cannot load the weights"], r.stderr[-3000:]
    no_leftovers(tmp_path / "out")


def test_a_killed_rank_fails_the_run_cleanly(tmp_path, tiny_card):
    csv = write_data(tmp_path, 12, folds=3)
    r = torchrun("--card", str(tiny_card), "--data", str(csv), "--split", "oof", "--out", str(tmp_path / "out"),
                 fault=(1, "kill"))
    assert r.returncode != 0
    # torchrun names the rank that died; rank 0 stops with our one line (dead peer or SIGTERM)
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*-9", r.stderr), r.stderr[-3000:]
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 1 and "another rank" in ours[0], r.stderr[-3000:]
    if (tmp_path / "out").exists():
        no_leftovers(tmp_path / "out")


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), max_size=12),
    world=st.integers(1, 9),
    data=st.data(),
)
def test_assign_covers_every_item_once_and_keeps_shards_together(sizes, world, data):
    items = iter(range(sum(sizes)))
    groups = [[next(items) for _ in range(n)] for n in sizes]
    costs = [data.draw(st.integers(1, 5000)) * n for n in sizes]
    shares = assign(groups, costs, world)
    assert len(shares) == world
    flat = sorted(i for s in shares for i in s)
    assert flat == list(range(sum(sizes)))
    owner = {i: r for r, s in enumerate(shares) for i in s}
    if len(groups) >= world:  # enough shards: each decoded on one rank only
        assert all(len({owner[i] for i in g}) == 1 for g in groups)
    else:  # too few: every rank that can get an item gets one
        assert sum(1 for s in shares if s) == min(world, sum(sizes))


def test_assign_balances_equal_shards():
    groups = [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(8)]
    shares = assign(groups, [100] * 8, 4)
    assert [len(s) for s in shares] == [6, 6, 6, 6]


def test_a_single_process_session_is_the_identity():
    s = Session()
    assert s.agree("x", lambda: 5) == 5 and s.broadcast([1]) == [1] and s.gather("a") == ["a"]
    assert s.device("cuda:3") == "cuda:3"


def test_one_fixed_gpu_for_several_ranks_is_refused():
    s = Session(rank=1, world=2, local_rank=1)
    with pytest.raises(ConfigError, match=r"--device cuda:1 under a launcher would put all 2 ranks on one GPU; pass --device cuda"):
        s.device("cuda:1")
    assert s.device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert s.device("auto") == "cpu"


def test_sigterm_becomes_a_silent_error_off_rank_0():
    for rank, silent in ((0, False), (1, True)):
        with pytest.raises(DistributedError, match=rf"rank {rank} was stopped by the launcher \(SIGTERM\)") as e:
            Session(rank=rank, world=2)._on_sigterm(15, None)
        assert e.value.silent is silent


def test_each_rank_takes_its_local_gpu_and_too_many_ranks_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert Session(rank=3, world=4, local_rank=1).device("auto") == "cuda:1"
    assert Session(rank=2, world=4, local_rank=0).device("cuda") == "cuda:0"
    with pytest.raises(ConfigError, match=r"rank 2 has local rank 2 but this machine shows 2 GPU\(s\); start at most 2 "
                                          r"processes per machine \(--nproc_per_node\) or pass --device cpu"):
        Session(rank=2, world=3, local_rank=2).device("auto")

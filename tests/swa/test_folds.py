"""Every fold in one `ens swa`: which folds a `{fold}` glob has (`glob_folds`), one options record per
fold (`fold_options`), and `run_folds` writing each fold's files as a one-fold run writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ensemble.errors import ConfigError, OutputExistsError
from ensemble.swa.core import SwaOptions, run, run_folds
from ensemble.swa.plan import _glob_regex, fold_options, glob_folds
from tests.swa.helpers import make_model, save, sha


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_glob_folds_finds_each_fold_number_once_in_order(tmp_path):
    _touch(tmp_path, "fold0_e1.pth", "fold0_e2.pth", "fold2_e1.pth", "fold10_e1.pth", "fold01_e1.pth", "foldx_e1.pth")
    (tmp_path / "fold7_e1.pth").mkdir()  # a folder is not a checkpoint
    assert glob_folds(str(tmp_path / "fold{fold}_e*.pth")) == [0, 2, 10]  # 01 is not how a fold is written


def test_glob_folds_repeated_placeholder_and_recursive_pattern(tmp_path):
    _touch(tmp_path, "runs/f1/a/fold1.pth", "runs/f2/fold2.pth", "runs/f3/fold4.pth", "runs/f5/b/c/fold5.pth")
    assert glob_folds(str(tmp_path / "runs/f{fold}/**/fold{fold}.pth")) == [1, 2, 5]  # f3/fold4: not one fold


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("a*.pth", "abc.pth", True), ("a*.pth", "a/b.pth", False), ("a?.pth", "ab.pth", True),
    ("[ab]x", "bx", True), ("[!ab]x", "bx", False), ("[!ab]x", "cx", True), ("**/x.pth", "x.pth", True),
    ("**/x.pth", "p/q/x.pth", True), ("a.b(c)+", "a.b(c)+", True), ("a.b", "axb", False),
])
def test_glob_regex_matches_what_glob_matches(pattern, path, matches):
    assert bool(re.fullmatch(_glob_regex(pattern), path)) is matches


def test_glob_folds_with_no_fold_number_is_one_line(tmp_path):
    _touch(tmp_path, "foldx_e1.pth")
    with pytest.raises(ConfigError, match="matches no files with a fold number in place of {fold}"):
        glob_folds(str(tmp_path / "fold{fold}_e*.pth"))


def test_fold_options_fill_out_and_fold(tmp_path):
    _touch(tmp_path, "fold0_e1.pth", "fold3_e1.pth")
    glob = str(tmp_path / "fold{fold}_e*.pth")
    opts = fold_options([], SwaOptions.of(tmp_path / "swa/fold{fold}.pth", glob=glob))
    assert [(o.out, o.fold) for o in opts] == [(tmp_path / "swa/fold0.pth", 0), (tmp_path / "swa/fold3.pth", 3)]
    one = fold_options([], SwaOptions.of(tmp_path / "swa/fold{fold}.pth", glob=glob, fold=3))
    assert [(o.out, o.fold) for o in one] == [(tmp_path / "swa/fold3.pth", 3)]
    plain = SwaOptions.of(tmp_path / "swa.pth", glob=glob, fold=3)
    assert fold_options([], plain) == [plain]


@pytest.fixture
def snapshots(tmp_path):
    """Two epochs' test_resnet checkpoints for folds 0 and 1: runs/fold<k>_epoch<e>.pth."""
    for k in range(2):
        for e in range(2):
            save(make_model(seed=10 * k + e, num_classes=3).state_dict(), tmp_path / "runs" / f"fold{k}_epoch{e}.pth")
    return str(tmp_path / "runs" / "fold{fold}_epoch*.pth")


def test_run_folds_writes_what_one_fold_runs_write(snapshots, bn_setup, tmp_path):
    _, card, data = bn_setup
    kw = {"glob": snapshots, "card": card, "bn_data": data, "workers": 0, "device": "cpu"}
    every = run_folds([], SwaOptions.of(tmp_path / "all" / "fold{fold}.safetensors", **kw))
    assert [r.out for r in every] == [tmp_path / "all" / f"fold{k}.safetensors" for k in range(2)]
    for k, res in enumerate(every):
        alone = run([], SwaOptions.of(tmp_path / "one" / f"fold{k}.safetensors", fold=k, **kw))
        assert sha(res.out) == sha(alone.out) == res.sha256  # the same bytes, BN refresh included
        meta = json.loads(res.sidecar.read_text())
        assert meta["fold"] == k and meta["bn_refresh"]["excluded_fold"] == k
        assert [Path(s["path"]).name for s in meta["sources"]] == [f"fold{k}_epoch0.pth", f"fold{k}_epoch1.pth"]
        drop = ("created", "sources")
        assert {a: b for a, b in meta.items() if a not in drop} == {
            a: b for a, b in json.loads(alone.sidecar.read_text()).items() if a not in drop}


def test_every_fold_is_planned_before_any_is_written(snapshots, tmp_path):
    out = tmp_path / "all"
    out.mkdir()
    (out / "fold1.pth").write_bytes(b"old")  # fold 1's output exists: refused before fold 0 is written
    with pytest.raises(OutputExistsError, match="fold1.pth exists; pass --force"):
        run_folds([], SwaOptions.of(out / "fold{fold}.pth", glob=snapshots))
    assert sorted(p.name for p in out.iterdir()) == ["fold1.pth"]


def test_run_refuses_every_fold_and_names_run_folds(snapshots, tmp_path):
    with pytest.raises(ConfigError, match="call ensemble.swa.core.run_folds for that, or give fold=k"):
        run([], SwaOptions.of(tmp_path / "fold{fold}.pth", glob=snapshots))

"""`swa()`: plan, average, write: outputs, selection records, option errors, nothing partial."""

from __future__ import annotations

import json
import logging
from dataclasses import FrozenInstanceError

import pytest
import torch

from ensemble.errors import ConfigError, ModelLoadError, OutputExistsError
from ensemble.predict.checkpoint import load_state_dict
from ensemble.swa import average_checkpoints, swa
from tests.swa.helpers import oracle, save, sha

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_output_round_trips_through_the_loader(three, tmp_path, suffix):
    models, paths = three
    res = swa(paths, out=tmp_path / "out" / f"swa{suffix}")
    assert res.out.is_file() and res.sidecar == res.out.with_suffix(".json")
    loaded = load_state_dict(res.out)
    want = average_checkpoints(paths)
    assert sorted(loaded) == sorted(want) and all(torch.equal(loaded[k], want[k]) for k in want)
    if suffix == ".pth":  # a plain state dict, readable without unpickling code
        assert set(torch.load(res.out, weights_only=True)) == set(want)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    model.load_state_dict(loaded, strict=True)
    meta = json.loads(res.sidecar.read_text())
    assert meta["sha256"] == sha(res.out) == res.sha256
    assert [s["path"] for s in meta["sources"]] == [str(p) for p in paths]
    assert [s["sha256"] for s in meta["sources"]] == [sha(p) for p in paths]
    assert [s["weight"] for s in meta["sources"]] == pytest.approx([1 / 3] * 3)
    assert meta["ema"] is False and meta["bn_refresh"] is None


def test_top_n_output_records_metrics_and_selection(three, tmp_path):
    models, paths = three
    (tmp_path / "m.csv").write_text("checkpoint,val_loss\ne1.pth,0.3\ne2.pth,0.1\ne3.safetensors,0.2\n")
    res = swa(paths, out=tmp_path / "top.safetensors", top_n=2, metrics=tmp_path / "m.csv", mode="min")
    assert [s.path for s in res.used] == [paths[1], paths[2]]
    got = load_state_dict(res.out)
    torch.testing.assert_close(got["fc.weight"], oracle(models[1:])["fc.weight"], rtol=0, atol=1e-6)
    meta = res.meta
    assert meta["selection"] == {"top_n": 2, "mode": "min", "metrics": str(tmp_path / "m.csv"), "metric": "val_loss"}
    assert [s["metric"] for s in meta["sources"]] == [0.1, 0.2]
    assert meta["not_selected"] == [{"path": str(paths[0]), "metric": 0.3}]


def test_glob_with_fold(three, tmp_path, monkeypatch):
    models, paths = three
    monkeypatch.chdir(tmp_path)
    for i, m in enumerate(models[:2]):
        save(m.state_dict(), tmp_path / "runs" / "fold1" / f"epoch{i}.pth")
    res = swa(out="swa.pth", glob="runs/fold{fold}/epoch*.pth", fold=1)
    assert [str(s.path) for s in res.used] == ["runs/fold1/epoch0.pth", "runs/fold1/epoch1.pth"]
    with pytest.raises(ConfigError, match=r"has \{fold\} but no --fold was given"):
        swa(out="x.pth", glob="runs/fold{fold}/*.pth")
    with pytest.raises(ConfigError, match="'runs/fold7/\\*.pth' matches no files"):
        swa(out="x.pth", glob="runs/fold{fold}/*.pth", fold=7)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(out="o.pth", top_n=2), ConfigError, "--top-n needs --metrics FILE and --mode max|min"),
        (dict(out="o.pth", mode="max"), ConfigError, "--mode says which end of --metrics --top-n keeps"),
        (dict(out="o.txt"), ConfigError, "unknown checkpoint suffix '.txt'; end it in one of: .safetensors, .pth, .pt"),
        (dict(out="e1.pth", force=True), ConfigError, "--out e1.pth is one of the checkpoints being averaged"),
        (dict(out="o.pth", bn_data="d.csv"), ConfigError, "--bn-data needs --card CARD"),
        (dict(out="o.pth", workers=-2), ConfigError, "--workers -2: give a number of decoding processes >= 0"),
    ],
)
def test_option_errors(three, tmp_path, monkeypatch, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message.replace("|", r"\|").replace("(", r"\(")):
        swa(["e1.pth", "e2.pth"], **kwargs)
    assert not (tmp_path / "o.pth").exists()


def test_existing_output_needs_force_and_nothing_partial(three, tmp_path, caplog):
    models, paths = three
    out = tmp_path / "swa.safetensors"
    swa(paths, out=out)
    before = sha(out)
    with pytest.raises(OutputExistsError, match="swa.safetensors exists; pass --force"):
        swa(paths[:2], out=out)
    assert sha(out) == before
    bad = save({"other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ModelLoadError):
        swa([paths[0], bad], out=out, force=True)
    assert sha(out) == before and not list(tmp_path.glob(".*.tmp"))
    swa(paths[:2], out=out, force=True)
    assert sha(out) != before
    with caplog.at_level(logging.WARNING):
        swa(paths[:1], out=tmp_path / "one.pth")
    assert "only one checkpoint" in caplog.text
    with pytest.raises(ConfigError, match="is given twice"):
        swa([paths[0], paths[0]], out=tmp_path / "twice.pth")
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        swa([tmp_path / "none.pth"], out=tmp_path / "n.pth")


def test_swa_options_record_is_what_the_keyword_call_builds(three, tmp_path):
    from ensemble.swa.core import SwaOptions, run

    models, paths = three
    by_keywords = swa(paths, out=tmp_path / "a.pth", weights=[1, 2, 1])
    by_record = run(paths, SwaOptions.of(tmp_path / "b.pth", weights=[1, 2, 1]))
    assert by_record.meta["sources"] == by_keywords.meta["sources"]
    a, b = load_state_dict(tmp_path / "a.pth"), load_state_dict(tmp_path / "b.pth")
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FrozenInstanceError):
        SwaOptions.of("x.pth").force = True

"""Metrics files and top-N selection by an explicit direction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.errors import ConfigError, UnknownNameError
from ensemble.swa import match_metrics, read_metrics, select_top_n


def test_read_metrics_json_and_csv(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"a.pth": 0.5, "b.pth": 0.7}))
    assert read_metrics(tmp_path / "m.json") == ("m", {"a.pth": 0.5, "b.pth": 0.7})
    (tmp_path / "m.csv").write_text("checkpoint,val_loss\na.pth,0.5\nb.pth,0.25\n")
    assert read_metrics(tmp_path / "m.csv") == ("val_loss", {"a.pth": 0.5, "b.pth": 0.25})
    (tmp_path / "w.csv").write_text("checkpoint,loss,f1\na.pth,0.5,0.9\n")
    assert read_metrics(tmp_path / "w.csv", metric="f1") == ("f1", {"a.pth": 0.9})
    with pytest.raises(ConfigError, match="3 columns .*name the metric column with --metric"):
        read_metrics(tmp_path / "w.csv")
    with pytest.raises(ConfigError, match="no metric column 'acc'; choose one of: loss, f1"):
        read_metrics(tmp_path / "w.csv", metric="acc")
    (tmp_path / "nan.csv").write_text("checkpoint,f1\na.pth,nan\n")
    with pytest.raises(ConfigError, match="metric of 'a.pth' is 'nan', not a finite number"):
        read_metrics(tmp_path / "nan.csv")
    (tmp_path / "dup.csv").write_text("checkpoint,f1\na.pth,1\na.pth,2\n")
    with pytest.raises(ConfigError, match='checkpoints listed twice: "a.pth"'):
        read_metrics(tmp_path / "dup.csv")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="metrics file must hold a JSON object, not list; write an object of checkpoint -> number"):
        read_metrics(tmp_path / "list.json")
    with pytest.raises(ConfigError, match="no such metrics file"):
        read_metrics(tmp_path / "none.json")


def test_top_n_respects_the_mode(tmp_path):
    ckpts = [tmp_path / "runs" / f"epoch{i}.pth" for i in range(5)]
    loss = [0.9, 0.2, 0.5, 0.1, 0.7]
    values = {f"runs/epoch{i}.pth": v for i, v in enumerate(loss)}  # relative to the metrics file
    metrics = match_metrics(ckpts, values, tmp_path / "m.json")
    assert metrics == loss
    assert select_top_n(ckpts, metrics, top_n=2, mode="min", metrics_path="m") == [3, 1]  # lowest loss first
    assert select_top_n(ckpts, metrics, top_n=2, mode="max", metrics_path="m") == [0, 4]
    assert sorted(select_top_n(ckpts, metrics, top_n=2, mode="min", metrics_path="m")) == sorted(np.argsort(loss)[:2].tolist())
    with pytest.raises(UnknownNameError, match="unknown selection mode 'best'; choose one of: max, min"):
        select_top_n(ckpts, metrics, top_n=2, mode="best", metrics_path="m")
    with pytest.raises(ConfigError, match="--top-n 6 but 5 checkpoints were given; choose 1 to 5"):
        select_top_n(ckpts, metrics, top_n=6, mode="min", metrics_path="m")
    with pytest.raises(ConfigError, match='m has no metric for ".*epoch2.pth"'):
        select_top_n(ckpts, [*metrics[:2], None, *metrics[3:]], top_n=2, mode="min", metrics_path="m")


def test_metrics_by_file_name_and_ambiguity(tmp_path):
    ckpts = [tmp_path / "f0" / "best.pth", tmp_path / "f1" / "last.pth"]
    assert match_metrics(ckpts, {"best.pth": 1.0, "last.pth": 2.0}, tmp_path / "m.json") == [1.0, 2.0]
    twins = [tmp_path / "f0" / "best.pth", tmp_path / "f1" / "best.pth"]
    with pytest.raises(ConfigError, match="'best.pth' fits several checkpoints.*name them by path"):
        match_metrics(twins, {"best.pth": 1.0}, tmp_path / "m.json")
    assert match_metrics(twins, {str(twins[0]): 1.0, "f1/best.pth": 2.0}, tmp_path / "m.json") == [1.0, 2.0]

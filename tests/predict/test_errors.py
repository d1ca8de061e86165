"""User errors of `ensemble.predict` that the command-level tests do not reach: weights that
vanish after the card was read, models timm cannot build, devices and ONNX batches that fail, and
a peer rank that dies. Each raises one `EnsembleError` whose text names what and the fix."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ensemble.errors import ConfigError, DistributedError, ModelLoadError
from ensemble.predict import predict
from ensemble.predict.card import resolve_config
from ensemble.predict.checkpoint import create_model
from ensemble.predict.distributed import Session
from ensemble.predict.runners import OnnxRunner, resolve_device
from tests.predict._data_helpers import make_config, write_data
from tests.predict.conftest import TINY_CLASSES, handmade_onnx, write_card


def test_missing_checkpoint_files_of_a_card_are_counted_and_named(tmp_path):
    card = write_card(tmp_path / "m.toml", arch="test_resnet", classes=list(TINY_CLASSES),
                      checkpoints=["f0.pth", "f1.pth"])
    with pytest.raises(ConfigError, match="2 checkpoint files missing: .* \\(paths are relative to the card\\); fix the paths or choose folds"):
        resolve_config(card)


def test_a_model_without_weights_is_refused_before_any_work(tmp_path):
    data = write_data(tmp_path, 6)
    cfg = dataclasses.replace(make_config(tmp_path, [0, 1, 2]), checkpoints={})
    with pytest.raises(ConfigError, match="model 'm' has no checkpoints or ONNX files; give them in the card or with --checkpoint/--onnx"):
        predict(cfg, data, split="oof", out_dir=tmp_path / "preds", device="cpu")


def test_a_weights_file_deleted_after_the_card_was_read_is_named(tmp_path):
    data = write_data(tmp_path, 6)
    cfg = make_config(tmp_path, [0, 1, 2])
    cfg.checkpoints[1].unlink()
    with pytest.raises(ModelLoadError, match="no such weights file \\(model 'm', fold 1\\); fix the path in the card or the flag"):
        predict(cfg, data, split="oof", out_dir=tmp_path / "preds", device="cpu")


def test_an_onnx_model_cannot_be_built_in_timm(tmp_path):
    handmade_onnx(tmp_path / "m.onnx")
    cfg = resolve_config(onnx=str(tmp_path / "m.onnx"), classes=list(TINY_CLASSES), name="m")
    with pytest.raises(ConfigError, match="model 'm' has no timm arch \\(it is an ONNX model\\); set arch in the card or --arch"):
        create_model(cfg)


def test_model_kwargs_timm_rejects_are_named(tmp_path):
    cfg = make_config(tmp_path, [0], model_kwargs={"wings": 2})
    with pytest.raises(ConfigError, match="timm cannot build 'test_resnet' with model_kwargs .*; fix model_kwargs in the card"):
        create_model(cfg)


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch):
    """Needs no GPU: torch is told there is one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"--device cuda:3: only 1 GPU\(s\) visible \(cuda:0..cuda:0\)"):
        resolve_device("cuda:3")


def test_onnx_runtime_failing_on_a_batch_names_the_file_and_shape(tmp_path):
    """A batch that passes ens's input check but fails inside ONNX Runtime (out of memory, a bad
    custom op): stood in for by a session that raises what ORT raises."""

    class FailingSession:
        def run(self, *args, **kwargs):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned\nmore")

    handmade_onnx(tmp_path / "m.onnx")
    runner = OnnxRunner(tmp_path / "m.onnx", device=torch.device("cpu"))
    runner.session = FailingSession()
    with pytest.raises(ModelLoadError, match="m.onnx: ONNX Runtime failed on a batch of shape \\(2, 3, 32, 32\\) \\(.*RUNTIME_EXCEPTION"):
        runner.logits(torch.zeros(2, 3, 32, 32))


def test_a_peer_dying_during_an_exchange_is_one_line_shown_by_rank_0_only():
    """What gloo raises when a peer's connection closes; the real torchrun case is in test_distributed."""

    def peer_closed():
        raise RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:4242")

    for rank in (0, 1):
        with pytest.raises(DistributedError, match="another rank stopped while merging") as e:
            Session(rank=rank, world=2)._collective(peer_closed, "merging")
        assert str(e.value) == (
            f"rank {rank}: another rank stopped while merging (Connection closed by peer [10.0.0.2]:4242); the launcher's "
            "report names the rank that died, fix its cause and rerun (finished parts are reused)"
        )
        assert e.value.silent == (rank != 0)

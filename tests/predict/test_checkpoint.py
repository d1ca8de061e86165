from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from ensemble.errors import ConfigError, ModelLoadError
from ensemble.predict.checkpoint import create_model, load_model, load_state_dict, strip_prefixes
from ensemble.predict.config import ModelConfig
from tests.predict.conftest import TINY_CLASSES, TINY_SIZE, normalised_batch, tiny_model

EMA_LAYOUTS = ("state_dict_ema", "model_ema")
LAYOUTS = ("plain", "state_dict", "model", "model_state_dict", "module", "orig_mod", "lightning",
           "ddp_compiled", "safetensors", *EMA_LAYOUTS)


def cfg_for(path: Path, arch: str = "test_resnet", **kw) -> ModelConfig:
    return ModelConfig(name="m", classes=TINY_CLASSES, img_size=(TINY_SIZE, TINY_SIZE), mean=(0.5,) * 3,
                       std=(0.5,) * 3, arch=arch, checkpoints={0: Path(path)}, **kw)


def make_lr(epoch: int) -> float:
    """A callable pickled into a checkpoint (as LR lambdas and schedulers are)."""
    return 0.1 * epoch


class TrainState:
    """A custom class pickled into a checkpoint (as trainer states are)."""

    def __init__(self) -> None:
        self.best = 0.9


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, torch.Tensor]:
    x = normalised_batch(4)
    with torch.no_grad():
        return x, tiny_model("test_resnet", 0)(x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_to_identical_outputs(layout, layout_checkpoints, reference):
    x, want = reference
    model, sha = load_model(cfg_for(layout_checkpoints[layout], ema=layout in EMA_LAYOUTS), 0)
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)
    assert sha == hashlib.sha256(layout_checkpoints[layout].read_bytes()).hexdigest()


@pytest.mark.parametrize("layout", EMA_LAYOUTS)
def test_without_ema_the_raw_weights_load(layout, layout_checkpoints):
    sd = load_state_dict(layout_checkpoints[layout])
    raw = tiny_model("test_resnet", 1).state_dict()
    assert sd.keys() == raw.keys() and all(torch.equal(sd[k], raw[k]) for k in raw)


def test_ema_asked_of_a_checkpoint_without_ema(layout_checkpoints):
    with pytest.raises(ModelLoadError) as e:
        load_state_dict(layout_checkpoints["state_dict"], ema=True)
    msg = str(e.value)
    assert "state_dict.pth: no EMA weights (none of the keys state_dict_ema, model_ema" in msg
    assert '"state_dict", "epoch", "arch"' in msg and "drop --ema" in msg


@pytest.mark.parametrize("payload", [make_lr, TrainState()], ids=["function", "custom_object"])
def test_pickled_code_is_refused_without_trust_and_loads_with_it(payload, tmp_path, reference):
    x, want = reference
    path = tmp_path / "trainer.ckpt"
    torch.save({"state_dict": tiny_model("test_resnet", 0).state_dict(), "extra": payload}, path)
    with pytest.raises(ModelLoadError) as e:
        load_model(cfg_for(path), 0)
    msg = str(e.value)
    assert msg.startswith(f"{path}: the checkpoint contains pickled Python objects that could run code")
    assert f"(it references tests.predict.test_checkpoint.{getattr(payload, '__name__', 'TrainState')})" in msg
    assert "if you trust its source, pass --trust-checkpoint" in msg
    model, _ = load_model(cfg_for(path, trust_checkpoint=True), 0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)


def test_timm_train_py_checkpoints_load_without_trust(tmp_path, reference):
    # timm's train.py saves its argparse Namespace; loops often save numpy metrics: data, not code.
    import argparse

    import numpy as np

    x, want = reference
    path = tmp_path / "timm_train.pth.tar"
    torch.save({"epoch": 9, "arch": "test_resnet", "args": argparse.Namespace(lr=0.1, model="test_resnet"),
                "state_dict": tiny_model("test_resnet", 0).state_dict(), "metric": np.float64(0.91),
                "history": np.arange(4.0)}, path)
    model, _ = load_model(cfg_for(path), 0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)


def test_a_whole_pickled_model_loads_only_when_trusted(tmp_path, reference):
    x, want = reference
    path = tmp_path / "whole.pt"
    torch.save(tiny_model("test_resnet", 0), path)
    with pytest.raises(ModelLoadError, match="pickled Python objects"):
        load_state_dict(path)
    sd = load_state_dict(path, trust=True)
    model = create_model(cfg_for(path))
    model.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), want, rtol=0, atol=1e-6)


def test_classifier_width_disagreeing_with_num_classes(tmp_path):
    path = tmp_path / "five.pth"
    torch.save(tiny_model("test_resnet", 0, num_classes=5).state_dict(), path)
    with pytest.raises(ModelLoadError) as e:
        load_model(cfg_for(path), 0)
    msg = str(e.value)
    assert msg.startswith(f"{path}: checkpoint does not fit test_resnet with 3 classes: ")
    assert "its classifier has 5 outputs but num_classes is 3" in msg
    assert '"fc.weight (5, 96) vs (3, 96)", "fc.bias (5,) vs (3,)"' in msg
    assert "check arch, img_size, classes and model_kwargs in the card" in msg


def test_missing_and_unexpected_keys_are_listed_with_counts(tmp_path):
    sd = tiny_model("test_resnet", 0).state_dict()
    dropped = [k for k in sd if k.startswith("layer4.") and not k.endswith("num_batches_tracked")]
    for k in dropped:
        del sd[k]
    sd["aux_head.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError) as e:
        load_model(cfg_for(path), 0)
    msg = str(e.value)
    assert f'missing keys "{dropped[0]}"' in msg and f"and {len(dropped) - 5} more ({len(dropped)} in all)" in msg
    assert 'unexpected keys "aux_head.weight"' in msg
    assert "classifier" not in msg  # the classifier is fine here


def test_batchnorm_counters_may_be_absent(tmp_path, reference):
    x, want = reference
    sd = {k: v for k, v in tiny_model("test_resnet", 0).state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "trimmed.pth")
    model, _ = load_model(cfg_for(tmp_path / "trimmed.pth"), 0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)


def test_lightning_module_with_extra_members(tmp_path, reference):
    x, want = reference
    sd = tiny_model("test_resnet", 0).state_dict()
    wrapped = {f"model.{k}": v for k, v in sd.items()} | {"criterion.weight": torch.ones(3)}
    path = tmp_path / "lit.ckpt"
    torch.save({"state_dict": wrapped}, path)
    model, _ = load_model(cfg_for(path), 0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)


def test_strip_prefixes_keeps_real_names():
    t = torch.zeros(1)
    assert strip_prefixes({"model.a": t, "head.b": t}).keys() == {"model.a", "head.b"}
    assert strip_prefixes({"module.model.a": t, "module.model.b": t}).keys() == {"a", "b"}
    assert strip_prefixes({"enc._orig_mod.a": t}).keys() == {"enc.a"}


def test_fixed_size_models_are_built_at_the_card_size(tmp_path):
    # A ViT's position embedding depends on the image size it was trained at.
    torch.manual_seed(0)
    vit = __import__("timm").create_model("test_vit", pretrained=False, num_classes=3, img_size=TINY_SIZE).eval()
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model, _ = load_model(cfg_for(path, arch="test_vit"), 0)
    x = normalised_batch(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), vit(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"not a zip", "bad.pth", "bad.pth: not a readable torch checkpoint ("),
        (b"\x00\x01garbage", "bad.safetensors", "bad.safetensors: not a readable safetensors file ("),
    ],
)
def test_unreadable_files(tmp_path, content, name, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelLoadError) as e:
        load_state_dict(tmp_path / name)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_no_weights(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.pth: no such checkpoint file; check the path in the card or --checkpoints"):
        load_state_dict(tmp_path / "nope.pth")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "meta.pth")
    with pytest.raises(ModelLoadError) as e:
        load_state_dict(tmp_path / "meta.pth")
    assert 'meta.pth: no weights found (a state dict, or one under state_dict, model' in str(e.value)
    assert 'top-level keys: "epoch", "optimizer"' in str(e.value)


def test_a_list_is_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ModelLoadError, match=r"list.pth: holds a list, not a state dict; save model.state_dict\(\) instead"):
        load_state_dict(tmp_path / "list.pth")


def test_model_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown timm architecture 'resnet1800' \(did you mean resnet18"):
        create_model(cfg_for(tmp_path / "x.pth", arch="resnet1800"))
    with pytest.raises(ConfigError, match=r"model 'm' has no checkpoint for fold 3 \(folds with checkpoints: 0\)"):
        load_model(cfg_for(tmp_path / "x.pth"), 3)
    with pytest.raises(ConfigError, match=r"timm cannot build 'test_resnet' with model_kwargs \{'bogus': 1\}"):
        create_model(cfg_for(tmp_path / "x.pth", model_kwargs={"bogus": 1}))

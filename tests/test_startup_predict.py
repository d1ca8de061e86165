"""`ens predict` start-up: each path imports what its models need, and nothing more.

- An ONNX-only run on the CPU loads no torch at all (`predict/lite.py`), hence neither timm nor
  torchvision (nor torch._dynamo). Those imports were most of a small run's wall time; the
  preprocessing is PIL (`predict/resize.py`), timm is imported only when a torch model is built or
  a timm card is resolved, and torch only when a run needs it (a torch model, a GPU, a view that
  resamples, several processes).
- The torch engine on ONNX files loads torch but not timm: timm's `import timm` imports torchvision,
  whose ops import torch._dynamo (`benchmarks/bench_predict.py --startup` measures what that costs).
- A timm checkpoint loads torch and timm (and what timm imports), but nothing of ONNX, scikit-learn,
  scipy or numba.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.predict._data_helpers import write_data
from tests.predict.conftest import TINY_CLASSES, handmade_onnx, tiny_model, write_card

PROBED = ("torch", "timm", "torchvision", "torch._dynamo", "torch._inductor", "sklearn", "scipy", "numba", "onnx",
          "onnxruntime")
NEVER = ("sklearn", "scipy", "numba")


def _loaded_by_predict(tmp_path: Path, card: Path, data: Path, env: dict[str, str] | None = None) -> list[str]:
    """The modules of `PROBED` that an `ens predict` of `card` (oof, hflip, CPU) has loaded when it ends."""
    args = ["predict", "--data", str(data), "--split", "oof", "--card", str(card), "--out", str(tmp_path / "out"),
            "--tta", "hflip", "--device", "cpu"]
    probe = (
        f"import sys\nfrom ensemble.cli import main\nsys.argv = ['ens', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('LOADED:', *(m for m in {PROBED!r} if m in sys.modules))"
    )
    full_env = {k: v for k, v in os.environ.items() if k != "ENS_PREDICT_TORCH"} | (env or {})
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=full_env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / card.stem / "oof.csv").is_file()
    return run.stdout.strip().splitlines()[-1].split()[1:]


def _onnx_card(tmp_path: Path) -> Path:
    for fold in range(2):
        handmade_onnx(tmp_path / "m" / f"fold{fold}.onnx", seed=fold)
    return write_card(tmp_path / "m" / "hand.toml", name="hand", onnx="fold{fold}.onnx", folds=[0, 1],
                      classes=list(TINY_CLASSES), img_size=[32, 32], mean=[0.5] * 3, std=[0.5] * 3)


def test_onnx_only_predict_imports_no_torch_timm_or_torchvision(tmp_path: Path) -> None:
    data = write_data(tmp_path, 6, folds=2)
    assert _loaded_by_predict(tmp_path, _onnx_card(tmp_path), data) == ["onnx", "onnxruntime"]


@pytest.mark.parametrize("model", ["onnx", "timm"])
def test_torch_engine_imports_timm_only_for_a_timm_model(tmp_path: Path, model: str) -> None:
    data = write_data(tmp_path, 6, folds=2)
    if model == "onnx":  # forced onto the torch engine, as a GPU or a resampling view would
        loaded = _loaded_by_predict(tmp_path, _onnx_card(tmp_path), data, {"ENS_PREDICT_TORCH": "1"})
        assert "torch" in loaded and "onnxruntime" in loaded
        assert not {"timm", "torchvision", "torch._dynamo"} & set(loaded), loaded
    else:
        (tmp_path / "r").mkdir()
        for fold in range(2):
            torch.save(tiny_model("test_resnet", fold).state_dict(), tmp_path / "r" / f"fold{fold}.pth")
        card = write_card(tmp_path / "r" / "res.toml", name="res", arch="test_resnet", classes=list(TINY_CLASSES),
                          img_size=32, checkpoints="fold{fold}.pth")
        loaded = _loaded_by_predict(tmp_path, card, data)
        assert {"torch", "timm"} <= set(loaded)
        assert not {"onnx", "onnxruntime"} & set(loaded), loaded
    assert not set(NEVER) & set(loaded), loaded

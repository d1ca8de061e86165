"""`ens predict` start-up: an ONNX-only run on the CPU loads no torch at all (`predict/lite.py`),
hence neither timm nor torchvision (nor torch._dynamo).

Those imports were most of a small run's wall time; the preprocessing is PIL (`predict/resize.py`),
timm is imported only when a torch model is built or a timm card is resolved, and torch only when
a run needs it (a torch model, a GPU, a view that resamples, several processes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.predict._data_helpers import write_data
from tests.predict.conftest import handmade_onnx, write_card

NOT_FOR_ONNX = ("torch", "timm", "torchvision", "torch._dynamo", "torch._inductor", "sklearn", "numba")


def test_onnx_only_predict_imports_no_torch_timm_or_torchvision(tmp_path: Path) -> None:
    data = write_data(tmp_path, 6, folds=2)
    for fold in range(2):
        handmade_onnx(tmp_path / "m" / f"fold{fold}.onnx", seed=fold)
    card = write_card(tmp_path / "m" / "hand.toml", name="hand", onnx="fold{fold}.onnx", folds=[0, 1],
                      classes=["cat", "dog", "fox"], img_size=[32, 32], mean=[0.5] * 3, std=[0.5] * 3)
    args = ["predict", "--data", str(data), "--split", "oof", "--card", str(card), "--out", str(tmp_path / "out"),
            "--tta", "hflip", "--device", "cpu"]
    probe = (
        f"import sys\nfrom ensemble.cli import main\nsys.argv = ['ens', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print('LOADED:', *(m for m in {NOT_FOR_ONNX!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "hand" / "oof.csv").is_file()
    assert run.stdout.strip().splitlines()[-1].split() == ["LOADED:"], run.stdout

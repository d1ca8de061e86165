"""Fixtures of the swa tests: three checkpoints in three layouts; a card and data for BatchNorm refresh."""

from __future__ import annotations

import numpy as np
import pytest

from tests.swa.helpers import MEAN, STD, make_model, save


@pytest.fixture
def three(tmp_path):
    """Three seeded test_resnet checkpoints in three layouts (plain .pth, nested, .safetensors)."""
    models = [make_model(seed=s) for s in range(3)]
    paths = [
        save(models[0].state_dict(), tmp_path / "e1.pth"),
        save({"state_dict": models[1].state_dict(), "epoch": 2}, tmp_path / "e2.pth"),
        save(models[2].state_dict(), tmp_path / "e3.safetensors"),
    ]
    return models, paths



@pytest.fixture
def bn_setup(tmp_path):
    """Two 3-class test_resnet checkpoints, a card whose own checkpoints do not exist yet (the SWA
    outputs), and a data CSV of 12 random 32x32 images in 3 folds."""
    from PIL import Image

    from tests.predict.conftest import write_card

    paths = [save(make_model(seed=s, num_classes=3).state_dict(), tmp_path / f"ep{s}.pth") for s in range(2)]
    card = write_card(
        tmp_path / "swa.toml", arch="test_resnet", classes=["cat", "dog", "fox"], img_size=[32, 32],
        mean=list(MEAN), std=list(STD), crop_pct=1.0, checkpoints="swa_fold{fold}.safetensors",
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        rows.append(f"{i:03d},img{i}.png,{i % 3}")
    data = tmp_path / "train.csv"
    data.write_text("id,path,fold\n" + "\n".join(rows) + "\n")
    return paths, card, data

"""Every command that writes refuses an unwritable output with one line (exit 2), never a traceback.

The unwritable path lies under an existing regular file (fails even as root); a read-only folder
variant runs where the tests are not root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from tests.conftest import random_probs, write_csv_table

runner = CliRunner()
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Two models' OOF and test tables, the labels CSV with folds, and a data CSV without folds."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    n, n_test = 60, 12
    ids = [f"{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"id": ids, "label": rng.choice(CLASSES, n), "fold": np.arange(n) % 3})
    labels.to_csv(d / "train.csv", index=False)
    labels.drop(columns="fold").to_csv(d / "nofold.csv", index=False)
    for m in ("m1", "m2"):
        write_csv_table(d / m / "oof.csv", ids, CLASSES, random_probs(rng, n, 3))
        write_csv_table(d / m / "test.csv", [f"t{i}" for i in range(n_test)], CLASSES, random_probs(rng, n_test, 3))
    return {"dir": d, "labels": d / "train.csv", "nofold": d / "nofold.csv", "m1": d / "m1", "m2": d / "m2"}


def _predict_inputs(d: Path) -> list[str]:
    from tests.predict._data_helpers import make_config, write_data

    csv = write_data(d, 4, folds=2)
    make_config(d, [0, 1], name="m")
    (d / "m.toml").write_text(
        'name = "tiny"\narch = "test_resnet"\nclasses = ["cat", "dog", "eel"]\nimg_size = 32\n'
        'checkpoints = "m_fold{fold}.pt"\n'
    )
    return ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--workers", "0", "--quiet"]


def _swa_inputs(d: Path) -> list[str]:
    from tests.swa.helpers import make_model, save

    return [str(save(make_model("test_resnet", seed=s, num_classes=3).state_dict(), d / f"e{s}.pth")) for s in (0, 1)]


def _export_inputs(d: Path) -> list[str]:
    import torch

    from tests.predict.conftest import TINY_CLASSES, TINY_SIZE, tiny_model, write_card

    torch.save(tiny_model("test_resnet", 0).state_dict(), d / "f0.pth")
    card = write_card(d / "r.toml", arch="test_resnet", classes=list(TINY_CLASSES), img_size=TINY_SIZE,
                      checkpoints="f{fold}.pth")
    return ["--card", str(card), "--folds", "0"]


# (command, how to build its arguments given the inputs, a scratch folder and the unwritable path)
COMMANDS = {
    "blend --out": lambda i, d, bad: ["blend", str(i["m1"]), str(i["m2"]), "--method", "soft", "--labels", str(i["labels"]),
                                      "--out", str(bad), "--no-nested"],
    "blend --submission": lambda i, d, bad: ["blend", str(i["m1"]), str(i["m2"]), "--method", "soft", "--labels",
                                             str(i["labels"]), "--out", str(d / "b"), "--submission", str(bad / "s.csv"),
                                             "--no-nested"],
    "folds --out": lambda i, d, bad: ["folds", "--data", str(i["nofold"]), "--n-splits", "2", "--out", str(bad / "f.csv")],
    "predict --out": lambda i, d, bad: ["predict", *_predict_inputs(d), "--out", str(bad)],
    "swa --out": lambda i, d, bad: ["swa", *_swa_inputs(d), "--out", str(bad / "swa.safetensors")],
    "export-onnx --out": lambda i, d, bad: ["export-onnx", *_export_inputs(d), "--out", str(bad)],
    "oof-report --plots": lambda i, d, bad: ["oof-report", str(i["m1"]), "--labels", str(i["labels"]), "--n-boot", "20",
                                             "--plots", str(bad)],
    "oof-report --json": lambda i, d, bad: ["oof-report", str(i["m1"]), "--labels", str(i["labels"]), "--n-boot", "20",
                                            "--json", str(bad / "r.json")],
    "check --json": lambda i, d, bad: ["check", str(i["m1"]), "--json", str(bad / "c.json")],
    "select --json": lambda i, d, bad: ["select", str(i["m1"]), str(i["m2"]), "--labels", str(i["labels"]), "--n", "1",
                                        "--n-boot", "20", "--json", str(bad / "s.json")],
    "submissions add --json": lambda i, d, bad: ["submissions", "add", str(_submission(d)), "--ledger", str(d / "l.db"),
                                                 "--json", str(bad / "a.json")],
}


def _submission(d: Path) -> Path:
    (d / "sub.csv").write_text("id,label\nt0,cat\nt1,dog\n")
    return d / "sub.csv"


def _assert_one_line_naming(r, where: Path) -> None:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert str(where) in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.mark.parametrize("command", list(COMMANDS))
def test_path_under_a_regular_file_traceback(command, inputs, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    r = runner.invoke(app, COMMANDS[command](inputs, tmp_path, blocker / "out"))
    _assert_one_line_naming(r, blocker)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_read_only_folder_traceback(command, inputs, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        r = runner.invoke(app, COMMANDS[command](inputs, tmp_path, ro / "out"))
        _assert_one_line_naming(r, ro)
        assert "permission denied" in r.stderr
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(stat.S_IRWXU)

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from ensemble.cli import app
from tests.predict.conftest import TINY_CLASSES, TINY_SIZE, normalised_batch, tiny_model, write_card

runner = CliRunner()


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_export")
    (root / "ckpt").mkdir()
    for fold in (0, 1):
        torch.save({"state_dict_ema": tiny_model("test_resnet", fold).state_dict(),
                    "state_dict": tiny_model("test_resnet", 5).state_dict()}, root / "ckpt" / f"f{fold}.pth")
    return write_card(root / "r.toml", arch="test_resnet", classes=list(TINY_CLASSES), img_size=TINY_SIZE,
                      checkpoints="ckpt/f{fold}.pth")


def test_export_prints_a_table_and_writes_json(card, tmp_path):
    assert "export-onnx" in runner.invoke(app, ["--help"]).stdout
    out = tmp_path / "onnx"
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(out), "--folds", "1", "--ema",
                            "--json", str(tmp_path / "rows.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "fold" in r.stdout and "max abs diff" in r.stdout and "fold1.onnx" in r.stdout
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["fold"] for row in rows] == [1] and rows[0]["max_abs_diff"] <= 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["fold1.onnx", "r.toml"]
    # --ema exported the EMA weights: compare with the seed-1 model, not the raw (seed-5) weights
    x = normalised_batch(3)
    sess = ort.InferenceSession(str(out / "fold1.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, tiny_model("test_resnet", 1)(x).numpy(), rtol=0, atol=1e-4)


def test_errors_are_one_line_exit_2(card, tmp_path):
    r = runner.invoke(app, ["export-onnx", "--card", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.toml'}: no such model card; give the path of a .toml card (see models/)"]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "fold0.onnx").write_bytes(b"old")
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "o"), "--folds", "0", "--ema"])
    assert r.exit_code == 2 and "fold0.onnx exists; pass --force" in r.stderr
    assert (tmp_path / "o" / "fold0.onnx").read_bytes() == b"old" and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["fold0.onnx"]
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "p"), "--exporter", "nope"])
    assert r.exit_code == 2 and "unknown ONNX exporter 'nope'; choose one of: auto, torchscript, dynamo" in r.stderr


def one_line(r) -> str:
    assert r.exit_code == 2 and r.stdout == "", r.output
    (line,) = r.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("opset", ["5", "99"])
def test_opset_out_of_range_is_one_line_and_leaves_no_folder(card, tmp_path, opset):
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "new" / "o"), "--opset", opset])
    line = one_line(r)
    assert line.startswith(f"error: --opset {opset}: out of the range 7 to 23 that the exporters of torch ")
    assert list(tmp_path.iterdir()) == []


def test_json_to_stdout_holds_the_json_only(card, tmp_path):
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "o"), "--folds", "0", "--json", "-", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["fold"] for row in rows] == [0] and rows[0]["file"] == str(tmp_path / "o" / "fold0.onnx")


def test_json_file_is_not_overwritten_without_force(card, tmp_path):
    (tmp_path / "rows.json").write_text("old")
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--out", str(tmp_path / "o"), "--folds", "0",
                            "--json", str(tmp_path / "rows.json")])
    assert one_line(r) == f"error: {tmp_path / 'rows.json'} exists; pass --force (force=True) to overwrite it or choose another output"
    assert (tmp_path / "rows.json").read_text() == "old" and not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_output_under_a_regular_file_is_one_line_before_any_work(card, tmp_path, flag):
    (tmp_path / "file.txt").write_text("a file")
    outs = {"--out": str(tmp_path / "o"), flag: str(tmp_path / "file.txt" / "x")}
    r = runner.invoke(app, ["export-onnx", "--card", str(card), "--folds", "0", *[x for kv in outs.items() for x in kv]])
    line = one_line(r)
    assert line.startswith(f"error: cannot write {tmp_path / 'file.txt' / 'x'}") and "file.txt is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_one_line_before_any_work(card, tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        r = runner.invoke(app, ["export-onnx", "--card", str(card), "--folds", "0", "--out", str(tmp_path / "ro" / "o")])
        line = one_line(r)
        assert line.startswith(f"error: cannot write {tmp_path / 'ro' / 'o' / 'fold0.onnx'}") and "permission denied" in line
    finally:
        (tmp_path / "ro").chmod(0o755)

"""`ens predict` through CliRunner: outputs, reruns, flags over the card, and every user error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble import read_table
from ensemble.cli import app
from tests.predict._data_helpers import make_config, write_data
from tests.predict.test_engine import plain_loop

runner = CliRunner()


@pytest.fixture
def proj(tmp_path):
    csv = write_data(tmp_path, 6, folds=2)
    cfg = make_config(tmp_path, [0, 1], name="m")
    (tmp_path / "m.toml").write_text(
        'name = "tiny"\narch = "test_resnet"\nclasses = ["cat", "dog", "eel"]\nimg_size = 32\ncrop_pct = 0.875\n'
        'mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\ninterpolation = "bilinear"\n'
        'checkpoints = "m_fold{fold}.pt"\n'
    )
    return tmp_path, csv, cfg


def ens(*args: str):
    return runner.invoke(app, ["predict", "--workers", "0", "--quiet", *args])  # args may override --workers


def one_error_line(r, expected_start: str) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected_start), r.stderr
    assert r.stdout == ""
    return lines[0]


def test_predict_oof_writes_the_table_and_reports(proj):
    d, csv, cfg = proj
    out = d / "preds"
    r = ens("--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--tta", "hflip", "--out", str(out),
            "--json", str(d / "run.json"))
    assert r.exit_code == 0, r.output
    assert "tiny" in r.stdout and "computed" in r.stdout and "oof" in r.stdout
    t = read_table(out / "tiny" / "oof.csv")
    df = pd.read_csv(csv)
    for k in (0, 1):
        rows = np.flatnonzero(df["fold"] == k)
        np.testing.assert_allclose(t.probs[rows], plain_loop(cfg, k, [str(d / p) for p in df["path"][rows]], ("id", "h")), atol=1e-5)
    rep = json.loads((d / "run.json").read_text())
    assert rep["tables"][0]["status"] == "computed" and rep["tables"][0]["views"] == 2 and rep["skipped"] == []
    # the same command again: up to date, nothing recomputed, JSON to stdout
    r = ens("--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--tta", "hflip", "--out", str(out), "--json", "-")
    assert r.exit_code == 0 and '"status": "up to date"' in r.stdout


def test_flags_override_the_card_and_work_without_one(proj):
    d, csv, _ = proj
    r = ens("--card", str(d / "m.toml"), "--img-size", "24", "--name", "small", "--data", str(csv), "--split", "test",
            "--out", str(d / "p"), "--save-views", "--tta", "vflip")
    assert r.exit_code == 0, r.output
    t = read_table(d / "p" / "small" / "test.csv")
    assert t.meta["img_size"] == [24, 24] and sorted(t.views) == ["identity", "vflip"]
    assert {p.name for p in (d / "p" / "small").glob("*.csv")} == {"test.csv", "test_fold0.csv", "test_fold1.csv"}
    r = ens("--arch", "test_resnet", "--checkpoint", str(d / "m_fold0.pt"), "--checkpoint", str(d / "m_fold1.pt"),
            "--classes", "a,b,c", "--img-size", "32", "--name", "flagged", "--data", str(csv), "--split", "oof",
            "--out", str(d / "p"))
    assert r.exit_code == 0, r.output
    assert read_table(d / "p" / "flagged" / "oof.csv").classes == ["a", "b", "c"]


def test_skip_bad_lists_the_skipped_images(proj):
    d, csv, _ = proj
    (d / "img" / "0004.png").write_bytes(b"broken")
    args = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "test", "--out", str(d / "p")]
    line = one_error_line(ens(*args), f"{d}/img/0004.png: cannot decode the image of id '00004' (UnidentifiedImageError")
    assert line.endswith("); replace the file or pass --skip-bad to predict without it")
    r = ens(*args, "--skip-bad")
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable images" in r.stdout and "00004" in r.stdout
    assert len(read_table(d / "p" / "tiny" / "test.csv")) == 5


def test_list_tta_shows_the_registries():
    r = runner.invoke(app, ["predict", "--list-tta"])
    assert r.exit_code == 0 and "center_crop[_F]" in r.stdout and "logits_mean" in r.stdout


@pytest.mark.parametrize(("extra", "expected"), [
    (["--tta", "hflip,blur"], "unknown TTA view 'blur'; choose one of: none, identity, hflip, vflip, rot90"),
    (["--merge", "median"], "unknown TTA merge 'median'; choose one of: mean, gmean, max, logits_mean"),
    (["--split", "val"], "unknown split 'val'; choose one of: oof, test"),
    (["--tta", "center_crop_2"], "TTA view center_crop_2: the crop fraction must be in (0, 1]; e.g. center_crop_0.875"),
    (["--img-size", "32,48", "--tta", "d4"], "model 'tiny': TTA views rot90, rot270, hflip_rot90, hflip_rot270 rotate by 90 degrees"),
    (["--batch-size", "0"], "--batch-size 0: give 1 or more images per batch"),
    (["--workers", "many"], "--workers 'many': give a number of decoding processes (0: decode in the main process) or auto"),
    (["--amp", "fp16", "--device", "cpu"], "--amp fp16 runs on CUDA only (device is cpu); use --amp none or auto on the CPU"),
    (["--resize-mode", "pad"], "--resize-mode: "),
])
def test_option_errors(proj, extra, expected):
    d, csv, _ = proj
    args = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "p")]
    if "--split" in extra:
        args = args[:4] + args[6:]
    one_error_line(ens(*args, *extra), expected)
    assert not (d / "p").exists()


def test_data_errors(proj):
    d, csv, _ = proj
    card = ["--card", str(d / "m.toml"), "--out", str(d / "p")]
    one_error_line(ens(*card, "--data", str(d / "nope.csv"), "--split", "oof"), f"{d}/nope.csv: no such labels CSV")
    (d / "nofold.csv").write_text("id,path\n1,img/0000.png\n")
    one_error_line(ens(*card, "--data", str(d / "nofold.csv"), "--split", "oof"),
                   f"{d}/nofold.csv: no fold column 'fold' (columns: id, path); name it with --fold-col")
    (d / "three.csv").write_text("id,path,fold\n1,img/0000.png,0\n2,img/0001.png,2\n")
    one_error_line(ens(*card, "--data", str(d / "three.csv"), "--split", "oof"),
                   f"{d}/three.csv: fold 2 (1 rows) has no checkpoint of model 'tiny' (it has folds 0, 1)")
    (d / "gone.csv").write_text("id,path\n1,img/0000.png\n2,img/missing.png\n")
    one_error_line(ens(*card, "--data", str(d / "gone.csv"), "--split", "test"),
                   f"{d}/gone.csv: 1 image files are missing, e.g. {d}/img/missing.png (id '2'; ids \"2\")")
    one_error_line(ens(*card, "--data", str(d / "gone.csv"), "--split", "test", "--root", str(d / "elsewhere")),
                   f"{d}/gone.csv: 2 image files are missing, e.g. {d}/elsewhere/img/0000.png")
    assert not (d / "p").exists()


def test_existing_output_from_other_inputs_needs_force(proj):
    d, csv, _ = proj
    args = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "p")]
    assert ens(*args).exit_code == 0
    before = (d / "p" / "tiny" / "oof.csv").read_bytes()
    one_error_line(ens(*args, "--tta", "hflip"),
                   f"{d}/p/tiny/oof.csv exists and was made from other inputs (checkpoint, data, preprocessing, TTA, AMP or "
                   "BatchNorm folding differ); pass --force (force=True) to overwrite or choose another --out")
    assert (d / "p" / "tiny" / "oof.csv").read_bytes() == before
    r = ens(*args, "--tta", "hflip", "--force")
    assert r.exit_code == 0 and "computed" in r.stdout

"""`ens predict` through CliRunner: outputs, reruns, flags over the card, and every user error."""

from __future__ import annotations

import json
import os

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
    # the same command again: up to date, nothing recomputed, JSON to stdout and nothing else there
    r = ens("--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--tta", "hflip", "--out", str(out), "--json", "-")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tables"][0]["status"] == "up to date"


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
    (["--tta", "center_crop_2"], "TTA view center_crop_2: the crop fraction must be in (0, 1]; e.g. center_crop_0.875"),
    (["--img-size", "32,48", "--tta", "d4"], "model 'tiny': TTA views rot90, rot270, hflip_rot90, hflip_rot270 rotate by 90 degrees"),
    (["--batch-size", "0"], "--batch-size 0: give 1 or more images per batch"),
    (["--workers", "many"], "--workers 'many': give a number of decoding processes (0: decode in the main process) or auto"),
    (["--amp", "fp16", "--device", "cpu"], "--amp fp16 runs on CUDA only (device is cpu); use --amp none or auto on the CPU"),
    (["--resize-mode", "pad"], "--resize-mode: 'pad' is not one of: crop, squash"),
    (["--workers", "-2"], "--workers -2: give a number of decoding processes >= 0 (0: decode in the main process) or auto"),
])
def test_option_errors(proj, extra, expected):
    d, csv, _ = proj
    args = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "p")]
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


@pytest.mark.parametrize(("flag", "value", "choices"), [
    ("--split", "val", "'val' is not one of 'oof', 'test'"),
    ("--amp", "fp8", "'fp8' is not one of 'auto', 'bf16', 'fp16', 'none'"),
])
def test_split_and_amp_are_choices_that_typer_lists(proj, flag, value, choices):
    d, csv, _ = proj
    args = {"--card": str(d / "m.toml"), "--data": str(csv), "--split": "oof", "--out": str(d / "p"), flag: value}
    r = ens(*[x for kv in args.items() for x in kv])
    assert r.exit_code == 2 and r.stdout == ""
    assert choices in " ".join(r.stderr.replace("│", " ").split())  # typer's usage box, unwrapped
    assert not (d / "p").exists()
    assert "<oof|test>" in runner.invoke(app, ["predict", "--help"]).stdout


def test_json_file_is_not_overwritten_without_force(proj):
    d, csv, _ = proj
    (d / "run.json").write_text("old")
    args = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "p"), "--json", str(d / "run.json")]
    one_error_line(ens(*args), f"{d / 'run.json'} exists; pass --force (force=True) to overwrite it or choose another output")
    assert (d / "run.json").read_text() == "old" and not (d / "p").exists()  # refused before any work
    r = ens(*args, "--force")
    assert r.exit_code == 0, r.output
    assert json.loads((d / "run.json").read_text())["tables"][0]["table"] == "oof"


def test_header_only_data_csv_is_an_error_not_empty_tables(proj):
    d, _, _ = proj
    (d / "empty.csv").write_text("id,path,fold\n")
    for split in ("oof", "test"):
        one_error_line(ens("--card", str(d / "m.toml"), "--data", str(d / "empty.csv"), "--split", split, "--out", str(d / "p")),
                       f"{d / 'empty.csv'}: no rows")
    assert not (d / "p").exists()


def test_fewer_folds_with_force_removes_the_stale_per_fold_tables(proj):
    d, csv, _ = proj
    base = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "test", "--out", str(d / "p"), "--save-views", "--tta", "hflip"]
    assert ens(*base).exit_code == 0
    folder = d / "p" / "tiny"
    assert {p.name for p in folder.glob("test_fold1.*")} == {"test_fold1.csv", "test_fold1.json", "test_fold1.views.npz"}
    r = ens(*base, "--folds", "0", "--force")
    assert r.exit_code == 0, r.output
    # only the tables of this run are left: test.csv is fold 0's table, and no fold-1 table stands beside it
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "test.csv", "test.json", "test.views.npz", "test_fold0.csv", "test_fold0.json", "test_fold0.views.npz"]
    mean, fold0 = read_table(folder / "test.csv"), read_table(folder / "test_fold0.csv")
    np.testing.assert_array_equal(mean.probs, fold0.probs)
    assert mean.meta["folds"] == [0]


def test_fewer_folds_refused_without_force_keeps_every_table(proj):
    d, csv, _ = proj
    base = ["--card", str(d / "m.toml"), "--data", str(csv), "--split", "test", "--out", str(d / "p")]
    assert ens(*base).exit_code == 0
    one_error_line(ens(*base, "--folds", "0", "--tta", "hflip"), f"{d}/p/tiny/test_fold0.csv exists and was made from other inputs")
    assert {p.name for p in (d / "p" / "tiny").glob("*.csv")} == {"test.csv", "test_fold0.csv", "test_fold1.csv"}


def test_non_utf8_card_is_one_line_naming_it(proj):
    d, csv, _ = proj
    (d / "latin1.toml").write_bytes('name = "caf\xe9"\narch = "test_resnet"\n'.encode("latin-1"))
    one_error_line(ens("--card", str(d / "latin1.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "p")),
                   f"{d / 'latin1.toml'}: the model card is not UTF-8 text (byte 0xe9 at offset 11); save it as UTF-8")


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_output_under_a_regular_file_is_one_line_before_any_work(proj, monkeypatch, flag):
    from ensemble.predict import engine

    d, csv, _ = proj
    (d / "file.txt").write_text("a file, not a folder")
    monkeypatch.setattr(engine, "make_runner", lambda *a, **k: pytest.fail("no model may load"))
    outs = {"--out": str(d / "p"), flag: str(d / "file.txt" / "out")}
    r = ens("--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", *[x for kv in outs.items() for x in kv])
    line = one_error_line(r, f"cannot write {d / 'file.txt' / 'out'}")
    assert "file.txt is a file, not a folder" in line
    assert (d / "file.txt").read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_one_line_before_any_work(proj):
    d, csv, _ = proj
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    try:
        r = ens("--card", str(d / "m.toml"), "--data", str(csv), "--split", "oof", "--out", str(d / "ro" / "p"))
        line = one_error_line(r, f"cannot write {d / 'ro' / 'p' / 'tiny' / 'oof.csv'}")
        assert "permission denied" in line and list((d / "ro").iterdir()) == []
    finally:
        (d / "ro").chmod(0o755)


def test_openmp_wait_policy_is_set_only_when_busy_and_never_over_the_users(monkeypatch):
    from ensemble.cli import predict as cli_predict
    from ensemble.predict import cpu

    monkeypatch.setattr(cpu, "choose_wait_policy", lambda: cpu.PASSIVE)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli_predict._passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    cli_predict._passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == cpu.PASSIVE
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(cpu, "choose_wait_policy", lambda: None)
    cli_predict._passive_openmp()
    assert "OMP_WAIT_POLICY" not in os.environ

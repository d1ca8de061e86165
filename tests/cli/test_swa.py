"""`ens swa` through CliRunner: the sources table, JSON, the BN note, and every user error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.predict.checkpoint import load_state_dict
from tests.swa.helpers import make_model, oracle, save, sha

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> tuple[list[torch.nn.Module], list[Path], Path]:
    """Three test_efficientnet checkpoints (two with EMA weights too) and a val_loss metrics CSV."""
    d = tmp_path_factory.mktemp("runs")
    models = [make_model("test_efficientnet", seed=s, num_classes=3) for s in range(3)]
    paths = [save({"state_dict": m.state_dict(), "state_dict_ema": m.state_dict()}, d / f"epoch{i}.pth")
             for i, m in enumerate(models[:2])]
    paths.append(save(models[2].state_dict(), d / "epoch2.safetensors"))
    metrics = d / "metrics.csv"
    metrics.write_text("checkpoint,val_loss\nepoch0.pth,0.30\nepoch1.pth,0.10\nepoch2.safetensors,0.20\n")
    return models, paths, metrics


def run(*args: object) -> object:
    return runner.invoke(app, ["swa", *map(str, args)])


def test_uniform_average_prints_sources_and_writes_both_files(ckpts, tmp_path):
    models, paths, _ = ckpts
    out = tmp_path / "swa.safetensors"
    r = run(*paths, "--out", out)
    assert r.exit_code == 0, r.output
    for p in paths:
        assert p.name in r.stdout and sha(p)[:12] in r.stdout
    assert "0.3333" in r.stdout and f"wrote {out}" in r.stdout and "averaged 3 checkpoint(s)" in r.stdout
    got, want = load_state_dict(out), oracle(models)
    torch.testing.assert_close(got["classifier.weight"], want["classifier.weight"], rtol=0, atol=1e-6)
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == sha(out)


def test_top_n_min_picks_the_lowest_loss_and_says_so(ckpts, tmp_path):
    models, paths, metrics = ckpts
    out = tmp_path / "top.pth"
    r = run(*paths, "--out", out, "--top-n", 2, "--metrics", metrics, "--mode", "min", "--json", "-")
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert [Path(s["path"]).name for s in meta["sources"]] == ["epoch1.pth", "epoch2.safetensors"]
    assert [s["metric"] for s in meta["sources"]] == [0.1, 0.2]
    assert meta["not_selected"] == [{"path": str(paths[0]), "metric": 0.3}]
    got = torch.load(out, weights_only=True)
    torch.testing.assert_close(got["classifier.weight"], oracle(models[1:])["classifier.weight"], rtol=0, atol=1e-6)
    r = run(*paths, "--out", tmp_path / "best.pth", "--top-n", 1, "--metrics", metrics, "--mode", "max")
    assert r.exit_code == 0, r.output
    assert "the 1 with the highest val_loss (--mode max)" in r.stdout
    assert [s["path"] for s in json.loads((tmp_path / "best.json").read_text())["sources"]] == [str(paths[0])]


def test_ema_and_glob(ckpts, tmp_path, monkeypatch):
    models, paths, _ = ckpts
    monkeypatch.chdir(paths[0].parent)
    r = run("--glob", "epoch*.pth", "--ema", "--out", tmp_path / "ema.safetensors")
    assert r.exit_code == 0, r.output
    assert "(EMA weights)" in r.stdout and json.loads((tmp_path / "ema.json").read_text())["ema"] is True
    got = load_state_dict(tmp_path / "ema.safetensors")
    torch.testing.assert_close(got["classifier.weight"], oracle(models[:2])["classifier.weight"], rtol=0, atol=1e-6)


def test_bn_refresh_prints_the_note(tmp_path):
    from PIL import Image

    from tests.predict.conftest import write_card

    paths = [save(make_model(seed=s, num_classes=2).state_dict(), tmp_path / f"e{s}.pth") for s in range(2)]
    card = write_card(tmp_path / "c.toml", arch="test_resnet", classes=["a", "b"], img_size=[32, 32], checkpoints="x{fold}.pth")
    for i in range(6):
        Image.new("RGB", (32, 32), (40 * i, 10, 200)).save(tmp_path / f"i{i}.png")
    (tmp_path / "d.csv").write_text("id,path,fold\n" + "".join(f"{i},i{i}.png,{i % 2}\n" for i in range(6)))
    r = run(*paths, "--out", tmp_path / "bn.pth", "--card", card, "--fold", 1, "--bn-data", tmp_path / "d.csv",
            "--device", "cpu", "--workers", 0)
    assert r.exit_code == 0, r.output
    assert "BatchNorm statistics refreshed on 3 images" in r.stdout and "fold 1 left out" in r.stdout
    assert "BatchNorm refresh can hurt" in r.stderr and "ens oof-report" in r.stderr


def _pickled(tmp_path: Path) -> Path:
    p = tmp_path / "pickled.pth"
    # a pickled Path object: refused by weights_only=True, as any class in a checkpoint is
    torch.save({"state_dict": make_model("test_efficientnet", num_classes=3).state_dict(), "cfg": Path("x")}, p)
    return p


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no checkpoints to average; give checkpoint files or --glob PATTERN"),
        (["{a}", "{b}", "--top-n", "1"], "--top-n needs --metrics FILE and --mode max|min"),
        (["{a}", "{b}", "--mode", "min"], "--mode says which end of --metrics --top-n keeps; pass --top-n N too"),
        (["{a}", "{b}", "--top-n", "1", "--metrics", "{m}", "--mode", "best"], "unknown selection mode 'best'; choose one of: max, min"),
        (["{a}", "{b}", "--top-n", "5", "--metrics", "{m}", "--mode", "min"], "--top-n 5 but 2 checkpoints were given; choose 1 to 2"),
        (["{a}", "{r}", "--top-n", "1", "--metrics", "{m}", "--mode", "min"], 'has no metric for "'),
        (["{a}", "{b}", "--weights", "1,x"], "--weights '1,x' is not a comma-separated list of numbers; give one per checkpoint"),
        (["{a}", "{b}", "--weights", "1,2,3"], "3 weights for 2 checkpoints"),
        (["{a}", "{b}", "--bn-data", "d.csv"], "--bn-data needs --card CARD"),
        (["{a}", "{r}"], "lacks"),
        (["{a}", "{c}", "--ema"], "no EMA weights"),
        (["{a}", "{p}"], "--trust-checkpoint"),
        (["--glob", "nothing*/x.pth"], "matches no files"),
        (["{a}", "{b}", "--out", "o.bin"], "unknown checkpoint suffix '.bin'; end it in one of: .safetensors, .pth, .pt"),
        (["{a}", "{b}", "--out", "{b}", "--force"], "is one of the checkpoints being averaged; choose another output"),
        (["{a}", "{a}"], "is given twice"),
        (["{a}", "missing.pth"], "missing.pth: no such checkpoint file"),
        (["--glob", "runs/fold{{fold}}/*.pth"], "has {fold} but no --fold was given; pass --fold k, or an --out with {fold} to average every fold"),
        (["{a}", "--out", "o{{fold}}.pth"], "has {fold} but neither --fold nor a --glob with {fold} says which folds; give --glob"),
        (["{a}", "--glob", "runs/fold{{fold}}/*.pth", "--out", "o{{fold}}.pth"], "have no fold; give them by --glob alone, or --fold k for one fold"),
        (["--glob", "nothing{{fold}}/x.pth", "--out", "o{{fold}}.pth"], "matches no files with a fold number in place of {fold}"),
        (["{a}", "{b}", "--top-n", "1", "--metrics", "none.json", "--mode", "max"], "none.json: no such metrics file"),
        (["{a}", "{b}", "--card", "none.toml"], "none.toml: no such model card"),
    ],
)
def test_errors_are_one_line_exit_2_and_write_nothing(ckpts, tmp_path, args, message):
    models, paths, metrics = ckpts
    resnet = save(make_model("test_resnet", num_classes=3).state_dict(), tmp_path / "resnet.pth")
    names = {"a": paths[0], "b": paths[1], "c": paths[2], "m": metrics, "r": resnet, "p": _pickled(tmp_path)}
    argv = [a.format(**names) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.safetensors")]
    r = run(*argv)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert r.stdout == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o."))]


def test_trust_checkpoint_loads_pickled_objects(ckpts, tmp_path):
    _, paths, _ = ckpts
    r = run(paths[0], _pickled(tmp_path), "--trust-checkpoint", "--out", tmp_path / "t.pth")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.pth").is_file()


def test_existing_output_needs_force(ckpts, tmp_path):
    _, paths, _ = ckpts
    out = tmp_path / "swa.safetensors"
    assert run(*paths[:2], "--out", out).exit_code == 0
    before = sha(out)
    r = run(*paths, "--out", out)
    assert r.exit_code == 2 and "swa.safetensors exists; pass --force" in r.stderr and sha(out) == before
    r = run(*paths, "--out", out, "--force", "--quiet", "--json", tmp_path / "r.json")
    assert r.exit_code == 0 and sha(out) != before and "wrote" in r.stdout
    assert json.loads((tmp_path / "r.json").read_text())["sha256"] == sha(out)


def _bn_inputs(tmp_path: Path) -> list[object]:
    """Two checkpoints, a card and a 6-image data CSV: the arguments of a BatchNorm-refresh run."""
    from PIL import Image

    from tests.predict.conftest import write_card

    paths = [save(make_model(seed=s, num_classes=2).state_dict(), tmp_path / f"e{s}.pth") for s in range(2)]
    card = write_card(tmp_path / "c.toml", arch="test_resnet", classes=["a", "b"], img_size=[32, 32], checkpoints="x{fold}.pth")
    for i in range(6):
        Image.new("RGB", (32, 32), (40 * i, 10, 200)).save(tmp_path / f"i{i}.png")
    (tmp_path / "d.csv").write_text("id,path,fold\n" + "".join(f"{i},i{i}.png,{i % 2}\n" for i in range(6)))
    return [*paths, "--card", card, "--fold", 1, "--bn-data", tmp_path / "d.csv", "--device", "cpu"]


@pytest.mark.parametrize(("workers", "message"), [
    ("-2", "--workers -2: give a number of decoding processes >= 0 (0: decode in the main process) or auto"),
    ("two", "--workers 'two': give a number of decoding processes (0: decode in the main process) or auto"),
])
def test_negative_workers_is_one_line_not_a_dataloader_error(tmp_path, workers, message):
    r = run(*_bn_inputs(tmp_path), "--workers", workers, "--out", tmp_path / "bn.pth")
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "bn.pth").exists()


def test_workers_auto_is_accepted_as_in_predict(tmp_path):
    r = run(*_bn_inputs(tmp_path), "--workers", "auto", "--out", tmp_path / "bn.pth", "--quiet")
    assert r.exit_code == 0, r.output
    assert "BatchNorm statistics refreshed on 3 images" in r.stdout


def test_json_file_is_not_overwritten_without_force(ckpts, tmp_path):
    _, paths, _ = ckpts
    (tmp_path / "r.json").write_text("old")
    r = run(*paths, "--out", tmp_path / "swa.pth", "--json", tmp_path / "r.json")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'r.json'} exists; pass --force (force=True) to overwrite it or choose another output"]
    assert (tmp_path / "r.json").read_text() == "old" and not (tmp_path / "swa.pth").exists()  # refused before any work


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_output_under_a_regular_file_is_one_line_before_any_work(ckpts, tmp_path, flag):
    _, paths, _ = ckpts
    (tmp_path / "file.txt").write_text("a file")
    outs = {"--out": tmp_path / "swa.pth", flag: tmp_path / "file.txt" / "out.pth"}
    r = run(*paths, *[x for kv in outs.items() for x in kv])
    assert r.exit_code == 2 and r.stdout == "", r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write {tmp_path / 'file.txt' / 'out'}") and "file.txt is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_one_line_before_any_work(ckpts, tmp_path):
    _, paths, _ = ckpts
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        r = run(*paths, "--out", tmp_path / "ro" / "swa.pth")
        assert r.exit_code == 2 and r.stdout == ""
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith(f"error: cannot write {tmp_path / 'ro' / 'swa.pth'}") and "permission denied" in line
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_every_fold_in_one_command(tmp_path, monkeypatch):
    """--glob and --out with {fold}, no --fold: each fold's average in its own file, as --fold k writes it."""
    monkeypatch.chdir(tmp_path)
    models = {(k, e): make_model(seed=10 * k + e, num_classes=3) for k in (0, 1) for e in (0, 1)}
    for (k, e), m in models.items():
        save(m.state_dict(), tmp_path / "runs" / f"fold{k}" / f"epoch{e}.pth")
    r = run("--glob", "runs/fold{fold}/epoch*.pth", "--out", "swa/fold{fold}.safetensors", "--json", "-")
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout)
    assert [(rec["fold"], rec["out"]) for rec in records] == [(0, "swa/fold0.safetensors"), (1, "swa/fold1.safetensors")]
    for k in (0, 1):
        got = load_state_dict(tmp_path / "swa" / f"fold{k}.safetensors")
        want = oracle([models[k, 0], models[k, 1]])
        torch.testing.assert_close(got["fc.weight"], want["fc.weight"], rtol=0, atol=1e-6)
        assert [s["path"] for s in records[k]["sources"]] == [f"runs/fold{k}/epoch0.pth", f"runs/fold{k}/epoch1.pth"]
    r = run("--glob", "runs/fold{fold}/epoch*.pth", "--out", "one/fold{fold}.safetensors", "--fold", 1)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("averaged 2 checkpoint(s)") == 1 and "wrote one/fold1.safetensors" in r.stdout
    assert sha(tmp_path / "one" / "fold1.safetensors") == sha(tmp_path / "swa" / "fold1.safetensors")
    r = run("--glob", "runs/fold{fold}/epoch*.pth", "--out", "swa/fold{fold}.safetensors", "--force")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("averaged 2 checkpoint(s)") == 2 and "wrote swa/fold0.safetensors" in r.stdout


def test_openmp_threads_sleep_when_busy_unless_the_user_chose(ckpts, tmp_path, monkeypatch):
    from ensemble.predict import cpu

    _, paths, _ = ckpts
    monkeypatch.setattr(cpu, "choose_wait_policy", lambda: cpu.PASSIVE)
    # set, then removed: monkeypatch records the variable's state before the test (usually absent), so
    # the policy the command sets does not leak into later tests' subprocesses (torchrun ranks)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert run(*paths, "--out", tmp_path / "a.pth").exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == cpu.PASSIVE
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert run(*paths, "--out", tmp_path / "b.pth").exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_wait_policy_is_chosen_before_torch_loads(tmp_path):
    code = (
        "import sys\n"
        "from ensemble.predict import cpu\n"
        "seen = []\n"
        "cpu.choose_wait_policy = lambda: seen.append('torch' in sys.modules)\n"
        "from typer.testing import CliRunner\n"
        "from ensemble.cli import app\n"
        "CliRunner().invoke(app, ['swa', 'missing.pth', '--out', 'o.pth'])\n"
        "print(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # a user's own policy skips the choice
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.split() == ["[False]"], r.stdout + r.stderr

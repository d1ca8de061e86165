from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import ensemble
from ensemble.cli import app
from tests.conftest import write_csv_table

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"ens {ensemble.__version__}"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "check" in r.stdout


def test_library_error_is_one_red_line_and_exit_2(tmp_path):
    bad = write_csv_table(tmp_path / "bad.csv", ["1", "2"], ["a", "b"], [[0.5, 0.5], [0.2, 0.9]])
    r = runner.invoke(app, ["check", str(bad)])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "bad.csv: 1 rows do not sum to 1" in lines[0]
    assert "pass --from-logits" in lines[0]
    assert "Traceback" not in r.output and r.stdout == ""


def test_long_error_is_not_wrapped(tmp_path):
    deep = tmp_path / ("x" * 120) / "missing.csv"
    r = runner.invoke(app, ["check", str(deep)])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1


def test_error_text_that_looks_like_markup_is_printed_verbatim(tmp_path):
    odd = tmp_path / "[bold]" / "[/x]" / "missing.csv"
    r = runner.invoke(app, ["check", str(odd)])
    assert r.exit_code == 2 and str(odd) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("ENS_DEBUG", "1")
    r = runner.invoke(app, ["check", str(tmp_path / "missing.csv")])
    assert r.exit_code != 0 and isinstance(r.exception, ensemble.EnsembleError)


def test_check_reports_valid_tables_and_labels(tmp_path):
    t = write_csv_table(tmp_path / "m1" / "oof.csv", ["01", "02"], ["a", "b"], [[0.5, 0.5], [0.1, 0.9]])
    (tmp_path / "train.csv").write_text("id,label\n02,b\n01,a\n")
    r = runner.invoke(app, ["check", str(t.parent), "--labels", str(tmp_path / "train.csv"), "--json", "-"])
    assert r.exit_code == 0, r.output
    assert '"model": "m1"' in r.stdout and '"rows": 2' in r.stdout
    (tmp_path / "short.csv").write_text("id,label\n01,a\n")
    r = runner.invoke(app, ["check", str(t), "--labels", str(tmp_path / "short.csv")])
    assert r.exit_code == 2 and '1 ids are not in' in r.stderr and '"02"' in r.stderr


@pytest.mark.parametrize("argv", [["-m", "ensemble", "--version"]])
def test_python_dash_m(argv):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"ens {ensemble.__version__}"


def test_os_error_escaping_a_command_is_one_line_naming_the_file(monkeypatch, tmp_path):
    import ensemble.tables

    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/oof.csv")

    monkeypatch.setattr(ensemble.tables, "resolve_table_path", broken)
    r = runner.invoke(app, ["check", str(tmp_path / "oof.csv")])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert lines == ["error: /data/oof.csv: permission denied; check the path, its permissions and free space"]
    monkeypatch.setenv("ENS_DEBUG", "1")
    r = runner.invoke(app, ["check", str(tmp_path / "oof.csv")])
    assert isinstance(r.exception, PermissionError)


def _ens(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """`python -m ensemble ARGS` in a subprocess (the console script's `run`: its quick exit included)."""
    return subprocess.run([sys.executable, "-m", "ensemble", *args], capture_output=True, text=True, cwd=cwd)


def test_the_quick_exit_keeps_the_status_and_every_buffered_line(tmp_path):
    r = _ens("--version")  # stdout is a pipe here: block-buffered until the exit flushes it
    assert r.returncode == 0 and r.stdout.strip() == f"ens {ensemble.__version__}"
    bad = write_csv_table(tmp_path / "bad.csv", ["1", "2"], ["a", "b"], [[0.5, 0.5], [0.2, 0.9]])
    r = _ens("check", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "bad.csv: 1 rows do not sum to 1" in r.stderr
    good = write_csv_table(tmp_path / "good.csv", ["1", "2"], ["a", "b"], [[0.5, 0.5], [0.1, 0.9]])
    r = _ens("check", str(good))
    assert r.returncode == 0 and "good.csv" in r.stdout


@pytest.mark.parametrize("daemon", [False, True])
def test_the_quick_exit_runs_exit_handlers_and_waits_for_a_running_thread(tmp_path, daemon):
    script = tmp_path / "probe.py"
    script.write_text(
        "import atexit, pathlib, sys, threading, time\n"
        "from ensemble.cli import run\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "atexit.register(lambda: (out / 'handler').write_text('ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(1.5), (out / 'thread').write_text('ran')),"
        f" daemon={daemon}).start()\n"
        "sys.argv = ['ens', '--version']\n"
        "run()\n"
    )
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "handler").read_text() == "ran"
    # a non-daemon thread is waited for (the normal exit); a daemon one is not, as Python never waits for them
    assert (tmp_path / "thread").exists() is not daemon

"""A Kaggle-format metric file with a grouped term drives oof-report, blend and select through the CLI.

The oracle is the metric file itself, called directly on frames this test builds with pandas.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.synthetic import make_problem
from ensemble.cli import app
from ensemble.tables import make_table, write_table
from tests.cli.test_blend import one_error_line

ROOT = Path(__file__).resolve().parents[2]
METRIC = ROOT / "examples" / "metrics" / "weighted_logloss_any.py"
CLASSES = ["normal", "moderate", "severe"]
runner = CliRunner()


def _module(path: Path):
    spec = importlib.util.spec_from_file_location("oracle_metric", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    """400 rows in 80 studies of 5, folds by study; 4 models; the solution with weights and studies."""
    root = tmp_path_factory.mktemp("comp")
    p = make_problem(n_models=4, n_samples=400, n_classes=3, seed=2, seeds_per_family=1)
    ids = np.array([f"{i:04d}" for i in range(400)], dtype=object)
    study = np.array([f"s{i // 5:03d}" for i in range(400)], dtype=object)
    labels = pd.DataFrame({"id": ids, "label": np.array(CLASSES)[p.y], "fold": (np.arange(400) // 5) % 5, "study": study})
    labels.to_csv(root / "train.csv", index=False)
    dirs = []
    for m, name in enumerate(p.names):
        d = root / "preds" / name
        write_table(make_table(ids, CLASSES, p.probs[m], meta={"model": name, "family": name}), d / "oof.csv")
        write_table(make_table([f"t{i}" for i in range(30)], CLASSES, p.probs[m][:30], meta={"model": name, "family": name}), d / "test.csv")
        dirs.append(str(d))
    make = _module(ROOT / "examples" / "metrics" / "make_solution.py")
    sol = make.make_solution(labels.astype(str), CLASSES, {"normal": 1, "moderate": 2, "severe": 4},
                             id_col="id", label_col="label", group_col="study")
    sol.to_csv(root / "solution.csv", index=False)
    return root, dirs, labels, pd.read_csv(root / "solution.csv", dtype={"id": str, "study": str})


def oracle(solution: pd.DataFrame, ids: np.ndarray, probs: np.ndarray) -> float:
    sub = pd.DataFrame(probs.astype(np.float64), columns=CLASSES)
    sub.insert(0, "id", ids)
    sol = solution.set_index("id").loc[list(ids)].reset_index()
    return float(_module(METRIC).score(sol, sub, "id"))


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_oof_report_scores_and_sorts_by_the_metric_file(comp):
    root, dirs, labels, solution = comp
    flags = ["--metric", METRIC, "--solution", root / "solution.csv", "--group-col", "study"]
    r = ens("oof-report", *dirs, "--labels", root / "train.csv", *flags, "--n-boot", "50", "--json", "-")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["metric"] == f"{METRIC}:score" and rep["higher_is_better"] is False
    from ensemble.tables import read_table

    truth = {}
    for d in dirs:
        t = read_table(d)
        truth[t.name] = oracle(solution, t.ids, t.probs)
    got = {m["name"]: m["score"] for m in rep["models"] if m["kind"] == "model"}
    assert got == pytest.approx(truth, rel=1e-9)
    scores = [m["score"] for m in rep["models"]]
    assert scores == sorted(scores)  # lower is better: best first
    fold0 = labels["fold"].to_numpy() == 0
    best = rep["models"][0]
    t = read_table(next(d for d in dirs if Path(d).name == best["name"]))
    assert best["fold_scores"]["0"] == pytest.approx(oracle(solution, t.ids[fold0], t.probs[fold0]), rel=1e-9)


def test_blend_and_select_on_the_metric_file(comp, tmp_path):
    root, dirs, labels, solution = comp
    flags = ["--metric", METRIC, "--solution", root / "solution.csv", "--group-col", "study"]
    ledger = tmp_path / "l.db"
    for name, extra in (("cal", ["--method", "weighted", "--calibrate", "temperature"]), ("soft", ["--method", "soft"])):
        r = ens("blend", *dirs, "--labels", root / "train.csv", *flags, *extra, "--n-boot", "50", "--out", tmp_path / name,
                "--submission", tmp_path / f"{name}.csv", "--target-format", "probs", "--ledger", ledger)
        assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "cal" / "recipe.json").read_text())
    assert rec["scores"]["metric"] == f"{METRIC}:score" and rec["scores"]["higher_is_better"] is False
    oof = pd.read_csv(tmp_path / "cal" / "oof.csv", dtype={"id": str})
    assert rec["scores"]["oof"] == pytest.approx(oracle(solution, oof["id"].to_numpy(), oof[CLASSES].to_numpy()), rel=1e-6)
    sub = pd.read_csv(tmp_path / "cal.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", *CLASSES] and np.allclose(sub[CLASSES].sum(axis=1), 1.0, atol=1e-5)
    r = ens("select", "--n", "2", "--ledger", ledger, "--n-boot", "50", "--json", "-")  # metric, solution, labels recorded
    assert r.exit_code == 0, r.output
    sel = json.loads(r.stdout)
    assert sel["metric"] == f"{METRIC}:score" and sel["higher_is_better"] is False
    by = {c["name"]: c for c in sel["candidates"]}
    assert by["cal"]["oof"] == pytest.approx(rec["scores"]["oof"], rel=1e-9)
    assert sel["picks"][0]["name"] == min(by, key=lambda k: by[k]["honest"])  # lowest honest loss leads
    listed = json.loads(ens("submissions", "list", "--ledger", ledger, "--json", "-").stdout)
    assert {e["metric"] for e in listed} == {f"{METRIC}:score"}  # the ledger names the metric


def test_a_metric_file_that_raises_is_one_line_naming_it(comp, tmp_path):
    root, dirs, *_ = comp
    bad = tmp_path / "bad_metric.py"
    bad.write_text("higher_is_better = True\n\ndef score(solution, submission, row_id_column_name):\n"
                   "    if len(solution) < 400:\n        raise KeyError('study')\n    return 0.5\n")
    r = ens("blend", *dirs, "--labels", root / "train.csv", "--metric", bad, "--method", "weighted", "--out", tmp_path / "b")
    one_error_line(r, "bad_metric.py:score raised KeyError", "rows")
    assert not (tmp_path / "b").exists()

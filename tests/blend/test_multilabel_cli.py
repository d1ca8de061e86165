"""`ens blend` on a small multi-label problem end to end: thresholds, recipe round trip, submission, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from benchmarks.synthetic import make_multilabel_problem
from ensemble.blend import apply_recipe
from ensemble.blend.folders import read_members
from ensemble.cli import app
from ensemble.errors import ConfigError
from ensemble.recipe import Recipe, read_recipe
from ensemble.tables import make_table, read_table, write_table

runner = CliRunner()
CLASSES = ["cat", "dog", "owl", "fox", "elk"]


@pytest.fixture(scope="module")
def problem():
    return make_multilabel_problem(n_models=4, n_samples=1200, n_classes=5, n_noise=1, seed=2)


@pytest.fixture
def setup(tmp_path, problem):
    """preds/<model>/{oof,test}.csv (sigmoid tables) and train.csv whose label sets are joined by ';'."""
    n = len(problem.y)
    ids = np.array([f"{i:05d}" for i in range(n)], dtype=object)
    tids = np.array([f"t{i:04d}" for i in range(60)], dtype=object)
    dirs = []
    for m, (name, fam) in enumerate(zip(problem.names, problem.families)):
        d = tmp_path / "preds" / name
        meta = {"model": name, "family": fam}
        write_table(make_table(ids, CLASSES, problem.probs[m], meta={**meta, "kind": "oof"}, task="multilabel"), d / "oof.csv")
        write_table(make_table(tids, CLASSES, problem.probs[m][-60:], meta={**meta, "kind": "test"}, task="multilabel"),
                    d / "test.csv")
        dirs.append(str(d))
    labels = tmp_path / "train.csv"
    sets = [";".join(np.array(CLASSES)[r.astype(bool)]) for r in problem.y]
    pd.DataFrame({"id": ids, "label": sets, "fold": problem.folds}).to_csv(labels, index=False)
    return tmp_path, dirs, str(labels)


def ens(*args):
    return runner.invoke(app, ["blend", *map(str, args)])


def one_error_line(r, *fragments):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_tuned_thresholds_end_to_end(setup, problem):
    root, dirs, labels = setup
    out, sub = root / "blends" / "w", root / "sub.csv"
    r = ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "weighted", "--tune-thresholds", "per-class",
            "--out", out, "--submission", sub, "--no-ledger", "--n-boot", 50, "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["task"] == "multilabel" and doc["threshold_mode"] == "per-class" and len(doc["thresholds"]) == 5
    assert doc["scores"]["nested"] is not None and doc["options"]["tune_thresholds"] == "per-class"
    oof = read_table(out / "oof.csv")
    assert oof.task == "multilabel"
    # the table decides at 0.5 what the raw blend decides at the thresholds; the in-sample score is sklearn's
    rec = read_recipe(out)
    assert rec.thresholds == doc["thresholds"]
    assert doc["scores"]["oof"] == pytest.approx(f1_score(problem.y, oof.probs > 0.5, average="macro", zero_division=0))
    # the submission: each test row's classes above 0.5 joined by a space (the top class when none)
    test = read_table(out / "test.csv")
    got = pd.read_csv(sub, dtype=str, keep_default_na=False)
    for row, text in zip(test.probs, got["label"]):
        on = np.flatnonzero(row > 0.5)
        expect = on if len(on) else [row.argmax()]
        assert text == " ".join(CLASSES[i] for i in expect)


def test_reapplied_recipe_gives_the_same_test_table(setup):
    root, dirs, labels = setup
    out = root / "blends" / "g"
    assert ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "greedy", "--rounds", 10, "--tune-thresholds",
               "global", "--out", out, "--no-ledger", "--n-boot", 20).exit_code == 0
    again = root / "blends" / "g2"
    r = ens(*dirs, "--recipe", out / "recipe.json", "--out", again, "--no-ledger")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_table(again / "test.csv").probs, read_table(out / "test.csv").probs)
    t = read_recipe(out).thresholds
    assert len(set(t)) == 1 and read_recipe(again).thresholds == t


def test_recipe_round_trips_with_thresholds(setup):
    root, dirs, labels = setup
    out = root / "blends" / "s"
    assert ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "soft", "--tune-thresholds", "per-class",
               "--out", out, "--no-ledger", "--n-boot", 20).exit_code == 0
    rec = read_recipe(out)
    assert rec == Recipe.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert rec.task == "multilabel" and rec.labels.label_sep == ";"
    oof, test = read_members(dirs)
    # re-applied by hand: the soft mean, moved so each threshold sits at 0.5
    mean = np.mean([t.probs for t in test], axis=0, dtype=np.float64)
    t = np.asarray(rec.thresholds)
    z = np.log(mean) - np.log1p(-mean) - (np.log(t) - np.log1p(-t))
    np.testing.assert_allclose(apply_recipe(rec, oof, test).test.probs, 1 / (1 + np.exp(-z)), atol=1e-6)


def test_a_recipe_is_refused_on_tables_of_the_other_task(setup):
    root, dirs, labels = setup
    out = root / "blends" / "s"
    assert ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "soft", "--out", out, "--no-ledger",
               "--n-boot", 20).exit_code == 0
    raw = json.loads((out / "recipe.json").read_text())
    raw["task"] = "multiclass"
    oof, test = read_members(dirs)
    with pytest.raises(ConfigError, match="re-apply it to tables of its task, or fit a new blend"):
        apply_recipe(raw, oof, test)


@pytest.mark.parametrize("extra,fragments", [
    (["--metric", "roc_auc", "--tune-thresholds", "per-class"],
     ["--tune-thresholds moves decisions (p > t), but roc_auc scores the probabilities themselves"]),
    (["--metric", "log_loss", "--tune-thresholds", "global"], ["log_loss scores the probabilities themselves"]),
    (["--tune-bias"], ["use --tune-thresholds per-class (or global)"]),
    (["--calibrate", "temperature"], ["so macro_f1 cannot see it — use --tune-thresholds"]),
    (["--metric", "qwk"], ["qwk"]),
])
def test_option_errors_are_one_line(setup, extra, fragments):
    root, dirs, labels = setup
    r = ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "soft", "--out", root / "b", "--no-ledger", *extra)
    one_error_line(r, *fragments)
    assert not (root / "b").exists()


def test_thresholds_on_multiclass_tables_name_tune_bias(tmp_path):
    from benchmarks.synthetic import make_problem
    from tests.blend.conftest import write_problem

    dirs, labels = write_problem(tmp_path, make_problem(n_models=2, n_samples=300, n_classes=3, seed=1), n_test=10)
    r = ens(*dirs, "--labels", labels, "--method", "soft", "--tune-thresholds", "per-class", "--out", tmp_path / "b",
            "--no-ledger")
    one_error_line(r, "these members are multiclass — use --tune-bias")


def test_allow_empty_and_the_submission_separator(setup):
    root, dirs, labels = setup
    out, sub = root / "blends" / "e", root / "sub.csv"
    r = ens(*dirs, "--labels", labels, "--label-sep", ";", "--method", "soft", "--out", out, "--submission", sub,
            "--submission-label-sep", "|", "--allow-empty", "--no-ledger", "--n-boot", 20, "--no-nested")
    assert r.exit_code == 0, r.output
    test = read_table(out / "test.csv")
    got = pd.read_csv(sub, dtype=str, keep_default_na=False)["label"].tolist()
    assert got == ["|".join(CLASSES[i] for i in np.flatnonzero(row > 0.5)) for row in test.probs]
    assert "" in got  # a row with no class above 0.5 stays empty

"""`ens blend` through the CLI: outputs, JSON, recipe re-application, and every user error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.synthetic import make_problem
from ensemble.cli import app
from ensemble.tables import make_table, read_table, write_table
from tests.blend.conftest import write_problem

runner = CliRunner()


@pytest.fixture(scope="module")
def problem():
    return make_problem(n_models=4, n_samples=600, n_classes=4, seed=5)


@pytest.fixture
def setup(tmp_path, problem):
    dirs, labels = write_problem(tmp_path, problem, n_test=40)
    return tmp_path, [str(d) for d in dirs], str(labels)


def ens(*args):
    return runner.invoke(app, ["blend", *map(str, args)])


def one_error_line(r, *fragments):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in r.output


def test_blend_prints_members_scores_and_verdict(setup):
    root, dirs, labels = setup
    r = ens("--method", "weighted", "--labels", labels, *dirs, "--out", root / "blends" / "w",
            "--submission", root / "sub.csv", "--tune-bias", "--quiet")
    assert r.exit_code == 0, r.output
    for text in ("members (weighted)", "model00", "OOF macro_f1 (in-sample)", "scores: macro_f1 (higher is better)", "nested", "best single",
                 "nested gain over best single model"):
        assert text in r.stdout
    assert (root / "blends" / "w" / "recipe.json").is_file() and (root / "sub.csv").is_file()
    assert read_table(root / "blends" / "w" / "test.csv").name == "w"


def test_json_to_stdout_is_the_recipe(setup):
    root, dirs, labels = setup
    r = ens("--method", "greedy", "--rounds", "10", "--labels", labels, *dirs, "--out", root / "g", "--json", "-")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["method"] == "greedy" and data["options"]["rounds"] == 10
    assert set(data["outputs"]) == {"oof", "test", "recipe"}
    assert data["scores"]["nested"] is not None


def test_recipe_reapplied_reproduces_the_blend(setup):
    root, dirs, labels = setup
    assert ens("--method", "weighted", "--labels", labels, *dirs, "--out", root / "a", "--no-nested").exit_code == 0
    r = ens("--recipe", root / "a" / "recipe.json", *dirs, "--out", root / "b", "--submission", root / "s.csv",
            "--target-format", "index", "--submission-id-col", "image_id")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_table(root / "b" / "test.csv").probs, read_table(root / "a" / "test.csv").probs)
    sub = pd.read_csv(root / "s.csv", dtype=str)
    assert list(sub.columns) == ["image_id", "label"] and sub["label"].str.isdigit().all()


def test_fixed_weights_top_and_seed_average(setup):
    root, dirs, labels = setup
    r = ens("--method", "hard", "--labels", labels, *dirs, "--out", root / "h", "--weights", "0.4,0.3,0.2,0.1", "--no-nested")
    assert r.exit_code == 0, r.output
    rec = json.loads((root / "h" / "recipe.json").read_text())
    assert rec["weights"] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    r = ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "t", "--top", "1", "--seed-average")
    assert r.exit_code == 0, r.output
    rec = json.loads((root / "t" / "recipe.json").read_text())
    assert rec["unit_members"] == {rec["units"][0]: ["model00", "model01"]} or rec["unit_members"] == {
        rec["units"][0]: ["model02", "model03"]}  # one family (two seeds) kept
    assert rec["options"]["top"] == 1 and rec["options"]["seed_average"] is True


@pytest.mark.parametrize("extra,fragments", [
    (["--method", "nope"], ["unknown blend method 'nope'; choose one of: soft, hard, rank, geometric, weighted, greedy"]),
    (["--method", "soft", "--weights", "0.5,0.5"], ["--weights has 2 values for 4 units", "give one weight per unit"]),
    (["--method", "soft", "--weights", "0.5,-0.5,1,1"], ["holds a negative or non-finite value"]),
    (["--method", "soft", "--weights", "a,b"], ["is not a comma-separated list of numbers"]),
    (["--method", "soft", "--weights", "0,0,0,0"], ["--weights are all zero"]),
    (["--method", "weighted", "--weights", "1,1,1,1"], ["--weights does not apply to --method weighted", "soft, hard, geometric"]),
    (["--method", "soft", "--top", "0"], ["--top 0: keep at least 1 member"]),
    (["--method", "hard", "--top", "2", "--weights", "1,1,1,1"], ["--weights and --top together are ambiguous"]),
])
def test_option_errors(setup, extra, fragments):
    root, dirs, labels = setup
    r = ens("--labels", labels, *dirs, "--out", root / "x", *extra)
    one_error_line(r, *fragments)
    assert not (root / "x").exists()


def test_no_method_no_labels_and_recipe_conflicts(setup):
    root, dirs, labels = setup
    one_error_line(ens("--labels", labels, *dirs, "--out", root / "x"), "no --method given")
    one_error_line(ens("--method", "soft", *dirs, "--out", root / "x"), "no --labels given")
    assert ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "a", "--no-nested").exit_code == 0
    one_error_line(ens("--recipe", root / "a" / "recipe.json", "--method", "soft", *dirs, "--out", root / "b"),
                   "--recipe replays a fitted blend")
    one_error_line(ens("--recipe", root / "a" / "recipe.json", *dirs[1:], "--out", root / "b"),
                   'the recipe needs members "model00" that were not given')


def test_output_exists_needs_force(setup):
    root, dirs, labels = setup
    args = ["--method", "soft", "--labels", labels, *dirs, "--out", root / "a", "--no-nested"]
    assert ens(*args).exit_code == 0
    one_error_line(ens(*args), "recipe.json exists; pass --force")
    assert ens(*args, "--force").exit_code == 0


def test_missing_test_table_names_the_member(setup):
    root, dirs, labels = setup
    (root / "preds" / "model02" / "test.csv").unlink()
    one_error_line(ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "x"),
                   "test table missing for member(s)", "model02")


def test_submission_without_any_test_table(setup):
    root, dirs, labels = setup
    for d in dirs:
        (root / "preds" / d.split("/")[-1] / "test.csv").unlink()
    one_error_line(ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "x", "--submission", root / "s.csv"),
                   "--submission needs test tables")


def _rewrite(path, *, ids=None, classes=None, meta=None):
    t = read_table(path)
    probs = t.probs
    new_ids = t.ids if ids is None else ids
    if ids is not None:
        probs = probs[: len(ids)]
    write_table(make_table(new_ids, classes or t.classes, probs, meta={**t.meta, **(meta or {})}), path, force=True)


def test_members_with_different_ids(setup):
    root, dirs, labels = setup
    t = read_table(root / "preds" / "model01" / "oof.csv")
    ids = t.ids.copy()
    ids[3] = "zzz"
    _rewrite(root / "preds" / "model01" / "oof.csv", ids=ids)
    one_error_line(ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "x"), "model01", "ids", '"zzz"')


def test_oof_tables_covering_other_rows_than_the_labels(setup):
    root, dirs, labels = setup
    df = pd.read_csv(labels, dtype=str)
    df.iloc[:-5].to_csv(root / "short.csv", index=False)
    one_error_line(ens("--method", "soft", "--labels", root / "short.csv", *dirs, "--out", root / "x"),
                   "5 ids are not in", "short.csv")


def test_members_with_different_classes(setup):
    root, dirs, labels = setup
    _rewrite(root / "preds" / "model03" / "oof.csv", classes=["c0", "c1", "c2", "other"])
    one_error_line(ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "x"),
                   "model03", "classes differ", '"other"')


def test_members_with_different_folds(setup):
    root, dirs, labels = setup
    _rewrite(root / "preds" / "model01" / "oof.csv", meta={"folds": [0, 1, 2]})
    one_error_line(ens("--method", "soft", "--labels", labels, *dirs, "--out", root / "x"),
                   "made on folds [0, 1, 2]", "must come from the same folds")


def test_members_with_the_same_name(setup):
    root, dirs, labels = setup
    one_error_line(ens("--method", "soft", "--labels", labels, dirs[0], dirs[0], "--out", root / "x"),
                   'members named "model00" appear more than once')

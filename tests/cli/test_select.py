from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.ledger import record_submission, score_submission
from tests.cli.test_submissions import one_error_line
from tests.select.test_finals import submit, world  # noqa: F401  (fixture: planted blends)

runner = CliRunner()


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_select_prints_picks_evidence_and_agreement(world):
    root, recipes, _ = world
    rec = list(recipes.values())
    r = ens("select", "--n", "2", "--labels", root / "train.csv", "--recipes", *rec, "--n-boot", "300",
            "--json", root / "sel.json")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "candidates in macro_f1 (higher is better; 1200 OOF rows, 300 paired resamples, seed 42)" in out
    assert "pick 1: leader — best honest estimate (in-sample OOF macro_f1" in out
    assert "pick 2: diverse — improves the expected best-of-2 macro_f1 from" in out
    assert "picks 1 and 2 agree on" in out and "of test rows" in out
    assert "fewer than 2 candidates have public LB scores" in out
    sel = json.loads((root / "sel.json").read_text())
    assert [p["name"] for p in sel["picks"]] == ["leader", "diverse"]
    assert {c["name"] for c in sel["candidates"]} == {"leader", "overfit", "copy", "diverse"}
    # `--recipes a b c` and positional recipes are the same thing
    r2 = ens("select", "--labels", root / "train.csv", *rec, "--n-boot", "300", "--json", root / "sel2.json")
    assert r2.exit_code == 0 and json.loads((root / "sel2.json").read_text()) == sel


def test_select_from_the_ledger_says_where_public_lb_disagrees(world):
    root, recipes, _ = world
    ledger = root / "l.db"
    lead = submit(root, recipes["leader"], "leader.csv")
    record_submission(lead, ledger=ledger, recipe_path=recipes["leader"])
    half = pd.read_csv(lead, dtype=str)
    half.loc[: len(half) // 2 - 1, "label"] = half["label"][: len(half) // 2].map(lambda c: "b" if c != "b" else "a")
    half.to_csv(root / "overfit.csv", index=False)  # what was submitted for "overfit": half the rows differ
    record_submission(root / "overfit.csv", ledger=ledger, recipe_path=recipes["overfit"])
    score_submission(1, public=0.80, ledger=ledger)
    score_submission(2, public=0.84, ledger=ledger)
    r = ens("select", "--labels", root / "train.csv", "--ledger", ledger, "--n-boot", "200")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "public LB prefers overfit over leader (+0.0400) but the honest OOF estimate prefers leader" in text
    assert "picks 1 and 2 agree on 50.00% of test rows" in text  # the submitted files, half the rows differ


def test_select_errors_are_one_line(world, tmp_path):
    root, recipes, _ = world
    rec = list(recipes.values())
    one_error_line(ens("select", "--labels", root / "train.csv", "--n", "9", *rec), "--n 9 but there are 4 candidates")
    one_error_line(ens("select", "--labels", tmp_path / "no.csv", *rec), "no.csv: no such labels CSV")
    one_error_line(ens("select", "--labels", root / "train.csv", "--ledger", tmp_path / "x.db"), "no ledger here")
    one_error_line(ens("select", "--labels", root / "train.csv", tmp_path / "r.json"), "no such recipe")
    one_error_line(
        ens("select", "--labels", root / "train.csv", *rec, "--n-boot", "3"), "--n-boot 3 is too few resamples"
    )

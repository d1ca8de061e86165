"""`ens blend --submission` records the submission in the ledger, as `ens submissions add` would."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import ensemble.errors
from ensemble.cli import app
from ensemble.ledger import list_submissions
from tests.cli.test_blend import one_error_line, problem, setup  # noqa: F401 (fixtures)

runner = CliRunner()


def blend(*args):
    return runner.invoke(app, ["blend", *map(str, args)])


def test_blend_records_its_submission_and_flags_a_repeat(setup):
    root, dirs, labels = setup
    ledger = root / "ledger.db"
    r = blend("--method", "soft", "--labels", labels, *dirs, "--out", root / "b1", "--submission", root / "s1.csv",
              "--ledger", ledger, "--note", "first soft")
    assert r.exit_code == 0, r.output
    assert "ledger: recorded as submission #1" in r.stdout
    # the same blend again under another name: identical predictions, warned about loudly
    r = blend("--method", "soft", "--labels", labels, *dirs, "--out", root / "b2", "--submission", root / "s2.csv",
              "--ledger", ledger)
    assert r.exit_code == 0, r.output
    assert "IDENTICAL to submission #1" in r.stderr
    entries = list_submissions(ledger)
    assert [e.note for e in entries] == ["first soft", ""]
    recorded = pd.read_csv(entries[0].path, dtype=str)
    assert recorded.equals(pd.read_csv(root / "s1.csv", dtype=str))
    assert entries[0].oof_score is not None and entries[0].metric == "macro_f1"  # scores came from the recipe


def test_no_ledger_records_nothing(setup):
    root, dirs, labels = setup
    r = blend("--method", "soft", "--labels", labels, *dirs, "--out", root / "b", "--submission", root / "s.csv",
              "--ledger", root / "l.db", "--no-ledger")
    assert r.exit_code == 0, r.output
    assert not (root / "l.db").exists()


def test_a_foreign_ledger_fails_before_anything_is_written(setup):
    root, dirs, labels = setup
    foreign = root / "notes.db"
    foreign.write_text("my notes, not a database")
    r = blend("--method", "weighted", "--labels", labels, *dirs, "--out", root / "b", "--submission", root / "s.csv",
              "--ledger", foreign)
    one_error_line(r, str(foreign))
    assert not (root / "b").exists() and not (root / "s.csv").exists()
    assert foreign.read_text() == "my notes, not a database"


def test_a_ledger_that_refuses_the_entry_leaves_no_blend_folder_or_submission(setup, monkeypatch):
    import ensemble.ledger
    from ensemble.errors import DuplicateSubmissionError

    root, dirs, labels = setup

    def refuse(*a, **k):
        raise DuplicateSubmissionError("predictions are identical to submission #1; nothing recorded")

    monkeypatch.setattr(ensemble.ledger, "record_submission", refuse)
    (root / "b").mkdir()
    (root / "b" / "keep.txt").write_text("mine")
    r = blend("--method", "soft", "--labels", labels, *dirs, "--out", root / "b", "--submission", root / "s.csv",
              "--ledger", root / "l.db")
    one_error_line(r, "identical to submission #1")
    assert sorted(p.name for p in (root / "b").iterdir()) == ["keep.txt"] and not (root / "s.csv").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_a_failed_ledger_entry_restores_the_files_it_would_have_replaced(setup, monkeypatch):
    import ensemble.ledger

    root, dirs, labels = setup
    args = ["--method", "soft", "--labels", labels, *dirs, "--out", root / "b", "--submission", root / "s.csv", "--no-ledger"]
    assert blend(*args).exit_code == 0
    before = {p.name: p.read_bytes() for p in (root / "b").iterdir()} | {"s.csv": (root / "s.csv").read_bytes()}

    def boom(*a, **k):
        raise ensemble.errors.LedgerError("ledger is locked; try again")

    monkeypatch.setattr(ensemble.ledger, "record_submission", boom)
    r = blend("--method", "hard", "--labels", labels, *dirs, "--out", root / "b", "--submission", root / "s.csv",
              "--ledger", root / "l.db", "--force")
    one_error_line(r, "ledger is locked")
    after = {p.name: p.read_bytes() for p in (root / "b").iterdir()} | {"s.csv": (root / "s.csv").read_bytes()}
    assert after == before


def test_method_seed_is_the_seed_average_of_each_family(setup):
    from ensemble.tables import read_table

    root, dirs, labels = setup
    r = blend("--method", "seed", "--labels", labels, *dirs, "--out", root / "seeds", "--no-nested")
    assert r.exit_code == 0, r.output
    assert "--method seed is now --method soft --by-family" in r.stderr
    members = [read_table(d) for d in dirs]
    for fam in dict.fromkeys(t.family for t in members):
        got = read_table(root / "seeds" / fam / "oof.csv")
        expect = np.mean([t.probs for t in members if t.family == fam], axis=0)
        np.testing.assert_allclose(got.probs, expect, rtol=1e-5, atol=1e-7)
        assert (root / "seeds" / fam / "recipe.json").is_file()


def test_select_after_blends_needs_no_labels_flag(setup):
    root, dirs, labels = setup
    ledger = root / "l.db"
    for i, method in enumerate(["soft", "weighted", "hard"]):
        r = blend("--method", method, "--labels", labels, *dirs, "--out", root / f"b{i}", "--submission",
                  root / f"s{i}.csv", "--ledger", ledger)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["select", "--n", "2", "--ledger", str(ledger), "--n-boot", "100", "--json", "-"])
    assert r.exit_code == 0, r.output
    import json

    sel = json.loads(r.stdout)  # with --json -, stdout holds the JSON only
    with_flag = runner.invoke(app, ["select", "--n", "2", "--ledger", str(ledger), "--n-boot", "100", "--labels", str(labels), "--json", "-"])
    assert json.loads(with_flag.stdout) == sel and len(sel["picks"]) == 2


def test_select_refuses_candidates_blended_on_different_or_changed_labels(setup):
    root, dirs, labels = setup
    other = root / "train2.csv"
    pd.read_csv(labels, dtype=str).to_csv(other, index=False, lineterminator="\r\n")  # same rows, another file
    for name, lab in (("a", labels), ("b", other)):
        assert blend("--method", "soft", "--labels", lab, *dirs, "--out", root / name, "--no-nested").exit_code == 0
    one_error_line(runner.invoke(app, ["select", str(root / "a"), str(root / "b"), "--n-boot", "50"]),
                   "candidates were blended against different labels files", "pass --labels")
    r = runner.invoke(app, ["select", str(root / "a"), str(root / "b"), "--n-boot", "50", "--labels", str(labels)])
    assert r.exit_code == 0, r.output
    with open(labels, "a") as f:
        f.write("\n")
    one_error_line(runner.invoke(app, ["select", str(root / "a"), "--n-boot", "50"]),
                   "the labels file changed since the candidates were blended")

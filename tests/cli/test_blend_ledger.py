"""`ens blend --submission` records the submission in the ledger, as `ens submissions add` would."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

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
    assert entries[0].oof_macro_f1 is not None  # scores came from the recipe


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

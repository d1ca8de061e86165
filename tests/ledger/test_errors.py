"""Ledger errors through `ens submissions`: files that are not a usable ledger, and requests the
ledger cannot answer. Each is one line on stderr and exit code 2, and the file is left as it was."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from ensemble.errors import LedgerError
from ensemble.ledger import _db
from tests._errors import ens, one_error_line


def write_submission(path, ids, labels):
    pd.DataFrame({"id": ids, "label": labels}).to_csv(path, index=False)
    return path


def test_an_empty_file_as_ledger_is_refused_untouched(tmp_path):
    led = tmp_path / "ledger.db"
    led.touch()
    one_error_line(ens("submissions", "list", "--ledger", led),
                   "the ledger is empty; record a submission first with `ens submissions add FILE`")
    assert led.read_bytes() == b""


def test_a_text_file_as_ledger_is_refused_untouched(tmp_path):
    led = tmp_path / "notes.db"
    led.write_text("my scores\n")
    sub = write_submission(tmp_path / "s.csv", ["1", "2"], ["cat", "dog"])
    one_error_line(ens("submissions", "add", sub, "--ledger", led),
                   "it was left untouched — move it away or give another --ledger path")
    assert led.read_text() == "my scores\n"


def test_a_ledger_without_schema_version_is_refused(tmp_path):
    led = tmp_path / "ledger.db"
    con = sqlite3.connect(led)
    con.execute(f"PRAGMA application_id = {_db.APP_ID}")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.commit()
    con.close()
    one_error_line(ens("submissions", "list", "--ledger", led),
                   "ledger has no schema version; it was left untouched — give another --ledger path")


def test_submissions_of_different_test_sets_cannot_be_diffed(tmp_path):
    led = tmp_path / "ledger.db"
    a = write_submission(tmp_path / "a.csv", ["1", "2", "3"], ["cat", "dog", "cat"])
    b = write_submission(tmp_path / "b.csv", ["7", "8", "9"], ["dog", "dog", "cat"])
    for sub in (a, b):
        assert ens("submissions", "add", sub, "--ledger", led).exit_code == 0
    one_error_line(ens("submissions", "diff", "1", "2", "--ledger", led),
                   "they predict different test sets and cannot be compared")


def test_a_ledger_sqlite_cannot_open_says_to_check_the_path(tmp_path, monkeypatch):
    """`sqlite3.connect` fails on files a test cannot make portably (no permission as root)."""
    led = tmp_path / "ledger.db"
    led.touch()

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(_db.sqlite3, "connect", refuse)
    with pytest.raises(LedgerError, match="cannot open the ledger .*; check the path and its permissions"):
        with _db.connect(led, create=False):
            pass

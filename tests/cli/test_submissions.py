from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.ledger import list_submissions
from tests.ledger.test_entries import CLASSES, write_recipe, write_sub

runner = CliRunner()


def ens(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r, fragment: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.fixture
def subs(tmp_path):
    rng = np.random.default_rng(1)
    ids = np.array([f"{i:04d}" for i in range(200)], dtype=object)
    codes = rng.integers(0, 3, 200)
    other = codes.copy()
    other[[3, 50, 120]] = (other[[3, 50, 120]] + 1) % 3
    return {
        "a": write_sub(tmp_path / "a.csv", ids, np.array(CLASSES, dtype=object)[codes]),
        "a_shuffled_indices": write_sub(tmp_path / "a2.csv", ids, codes, order=rng.permutation(200)),
        "b": write_sub(tmp_path / "b.csv", ids, np.array(CLASSES, dtype=object)[other]),
        "recipe": write_recipe(tmp_path / "blends" / "w" / "recipe.json"),
        "ledger": tmp_path / "ledger.db",
        "tmp": tmp_path,
    }


def test_add_warns_loudly_on_a_duplicate_and_shows_the_closest_otherwise(subs):
    led = subs["ledger"]
    r = ens("submissions", "add", subs["a"], "--note", "first try", "--recipe", subs["recipe"], "--ledger", led)
    assert r.exit_code == 0, r.output
    assert "recorded submission #1" in r.stdout and "no earlier submission over the same ids" in r.stdout
    r = ens("submissions", "add", subs["a_shuffled_indices"], "--recipe", subs["recipe"], "--ledger", led)
    assert r.exit_code == 0, r.output
    warning = " ".join(r.stderr.split())
    assert "DUPLICATE" in warning and "IDENTICAL to submission #1" in warning and "'first try'" in warning
    assert "identical to submission #1" in r.stdout
    r = ens("submissions", "add", subs["b"], "--ledger", led, "--json", subs["tmp"] / "add.json")
    assert r.exit_code == 0 and "closest earlier: #" in r.stdout and "98.50% of rows agree (3 differ)" in r.stdout
    assert "DUPLICATE" not in r.stderr
    out = json.loads((subs["tmp"] / "add.json").read_text())
    assert out["entry"]["id"] == 3 and out["agreement"] == pytest.approx(0.985) and out["duplicate_of"] is None


def test_strict_duplicate_is_exit_2_and_nothing_recorded(subs):
    led = subs["ledger"]
    ens("submissions", "add", subs["a"], "--ledger", led)
    r = ens("submissions", "add", subs["a"], "--strict", "--ledger", led)
    one_error_line(r, "predictions are identical to submission #1")
    assert "nothing recorded" in r.stderr and r.stdout == ""
    assert len(list_submissions(led)) == 1


def test_list_shows_the_history_and_same_as(subs):
    led = subs["ledger"]
    ens("submissions", "add", subs["a"], "--note", "v1", "--recipe", subs["recipe"], "--ledger", led)
    ens("submissions", "add", subs["b"], "--note", "v2", "--ledger", led)
    ens("submissions", "add", subs["a"], "--note", "oops", "--ledger", led)
    r = ens("submissions", "list", "--ledger", led, "--json", subs["tmp"] / "list.json")
    assert r.exit_code == 0, r.output
    assert "submissions (3)" in r.stdout and "v1" in r.stdout and "oops" in r.stdout
    assert "0.7800" in r.stdout and "[0.7900, 0.8300]" in r.stdout  # nested and CI from the recipe
    row3 = next(ln for ln in r.stdout.splitlines() if "oops" in ln)
    assert "#1" in row3  # `same as`
    entries = json.loads((subs["tmp"] / "list.json").read_text())
    assert [e["note"] for e in entries] == ["v1", "v2", "oops"] and entries[0]["ci95"] == [0.79, 0.83]


def test_score_records_and_refuses_bad_requests(subs):
    led = subs["ledger"]
    ens("submissions", "add", subs["a"], "--ledger", led)
    r = ens("submissions", "score", "1", "--public", "0.812", "--ledger", led)
    assert r.exit_code == 0 and "public 0.8120, private -" in r.stdout
    r = ens("submissions", "score", "1", "--private", "0.8", "--ledger", led, "--json", "-")
    assert r.exit_code == 0 and '"private_score": 0.8' in r.stdout and '"public_score": 0.812' in r.stdout
    one_error_line(ens("submissions", "score", "1", "--ledger", led), "no score given; pass --public X and/or --private Y")
    one_error_line(ens("submissions", "score", "7", "--public", "0.5", "--ledger", led), "no submission #7 (the ledger holds #1..#1)")


def test_diff_shows_agreement_classes_and_flipped_rows(subs):
    led = subs["ledger"]
    ens("submissions", "add", subs["a"], "--ledger", led, "--recipe", subs["recipe"])
    ens("submissions", "add", subs["b"], "--ledger", led, "--recipe", subs["recipe"])
    r = ens("submissions", "diff", "1", "2", "--ledger", led, "--rows", "1", "--json", subs["tmp"] / "d.json")
    assert r.exit_code == 0, r.output
    assert "#1 vs #2: 98.50% agree on 200 common ids (3 flipped)" in r.stdout
    assert "per-class counts" in r.stdout and "... and 2 more" in r.stdout
    d = json.loads((subs["tmp"] / "d.json").read_text())
    assert [f["id"] for f in d["flipped"]] == ["0003", "0050", "0120"]  # --json has them all
    assert sum(c["change"] for c in d["per_class"]) == 0
    one_error_line(ens("submissions", "diff", "1", "5", "--ledger", led), "no submission #5")


def test_ledger_errors_through_the_cli(subs):
    tmp, led = subs["tmp"], subs["ledger"]
    one_error_line(ens("submissions", "list", "--ledger", led), "no ledger here; record a submission first")
    foreign = tmp / "photos.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    one_error_line(ens("submissions", "add", subs["a"], "--ledger", foreign), "not an ens ledger")
    assert foreign.read_bytes() == before
    text = tmp / "notes.txt"
    text.write_text("my submissions: 1, 2, 3\n")
    one_error_line(ens("submissions", "list", "--ledger", text), "not an ens ledger (file is not a database)")
    assert text.read_text() == "my submissions: 1, 2, 3\n"
    one_error_line(ens("submissions", "add", tmp / "nope.csv", "--ledger", led), "nope.csv: no such submission file")
    one_error_line(
        ens("submissions", "add", subs["a"], "--ledger", led, "--submission-id-col", "image_id"),
        "no column 'image_id' (columns: id, label); name it with --submission-id-col",
    )
    one_error_line(ens("submissions", "add", subs["a"], "--ledger", led, "--recipe", tmp / "r.json"), "no such recipe")
    bad = write_sub(tmp / "bad.csv", ["1", "2"], ["cat", "wolf"])
    one_error_line(
        ens("submissions", "add", bad, "--ledger", led, "--recipe", subs["recipe"]),
        "labels \"wolf\" in 'target' are not among the 3 classes",
    )
    assert not led.exists()


def test_default_ledger_is_dot_ens_in_the_current_folder(subs, monkeypatch):
    monkeypatch.chdir(subs["tmp"])
    monkeypatch.delenv("ENS_LEDGER")
    assert ens("submissions", "add", subs["a"]).exit_code == 0
    assert (subs["tmp"] / ".ens" / "ledger.db").is_file()
    r = ens("submissions", "list")
    assert r.exit_code == 0 and "submissions (1)" in r.stdout


def test_id_col_no_longer_names_the_submission_s_column(subs):
    r = ens("submissions", "add", subs["a"], "--ledger", subs["ledger"], "--id-col", "id")
    assert r.exit_code == 2 and "No such option" in r.output


def test_json_file_is_not_overwritten_without_force_and_checked_before_recording(subs):
    led, out = subs["ledger"], subs["tmp"] / "add.json"
    out.write_text("keep")
    one_error_line(ens("submissions", "add", subs["a"], "--ledger", led, "--json", out), "add.json exists; pass --force")
    assert out.read_text() == "keep" and not led.exists()  # refused before the ledger was touched
    assert ens("submissions", "add", subs["a"], "--ledger", led, "--json", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["entry"]["id"] == 1
    for argv in (["list"], ["score", "1", "--public", "0.9"], ["diff", "1", "1"]):
        one_error_line(ens("submissions", *argv, "--ledger", led, "--json", out), "add.json exists; pass --force")
        assert ens("submissions", *argv, "--ledger", led, "--json", out, "--force").exit_code == 0


@pytest.mark.parametrize("argv", [["add", "b"], ["list"], ["score", "1", "--private", "0.8"], ["diff", "1", "2"]])
def test_json_to_stdout_mixes_in_no_rich_tables(subs, argv):
    led = subs["ledger"]
    assert ens("submissions", "add", subs["a"], "--ledger", led).exit_code == 0
    assert ens("submissions", "add", subs["b"], "--ledger", led).exit_code == 0
    argv = [subs["b"] if a == "b" else a for a in argv]
    r = ens("submissions", *argv, "--ledger", led, "--json", "-")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)  # stdout is the JSON and nothing else


def test_diff_negative_rows_accepted(subs):
    led = subs["ledger"]
    assert ens("submissions", "add", subs["a"], "--ledger", led).exit_code == 0
    one_error_line(ens("submissions", "diff", "1", "1", "--rows", "-5", "--ledger", led),
                   "--rows -5 is negative; give how many flipped rows to show (0 or more)")


def test_add_of_a_header_only_file_records_an_empty_submission(subs):
    empty = subs["tmp"] / "empty.csv"
    empty.write_text("id,label\n")
    one_error_line(ens("submissions", "add", empty, "--ledger", subs["ledger"]), "empty.csv: no rows (only a header)")
    assert not subs["ledger"].exists()


def test_add_of_a_ragged_row_records_shifted_columns(subs):
    ragged = subs["tmp"] / "ragged.csv"
    ragged.write_text("id,label\n1,a,extra\n")
    one_error_line(ens("submissions", "add", ragged, "--ledger", subs["ledger"]), "row 1 (line 2) has 3 fields, the header has 2")

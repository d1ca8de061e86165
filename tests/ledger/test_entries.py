from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score

from ensemble.errors import ClassMismatchError, ConfigError, DuplicateSubmissionError, LabelError, LedgerError
from ensemble.ledger import (
    diff_submissions,
    get_submission,
    list_submissions,
    load_predictions,
    record_submission,
    score_submission,
)
from ensemble.ledger.submission_rows import normalise_submission, prediction_agreement
from ensemble.recipe import read_recipe
from ensemble.submission import SubmissionFormat

CLASSES = ["cat", "dog", "fox"]
ROOT = Path(__file__).resolve().parents[2]  # the repository root


def write_sub(path: Path, ids, targets, *, id_col: str = "id", target_col: str = "label", order=None) -> Path:
    """A submission CSV written by hand with pandas, rows in `order` (default as given)."""
    df = pd.DataFrame({id_col: list(ids), target_col: list(targets)})
    if order is not None:
        df = df.iloc[order]
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def write_recipe(path: Path, *, classes=CLASSES, oof=0.81, nested=0.78, ci=(0.79, 0.83), method="weighted") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    recipe = {
        "method": method, "classes": classes, "units": ["m1", "m2"], "unit_members": {"m1": ["m1"], "m2": ["m2"]},
        "weights": [0.6, 0.4], "bias": None,
        "members": [
            {"name": "m1", "family": "m1", "oof": "preds/m1/oof.csv", "test": "preds/m1/test.csv", "oof_sha256": "a1", "test_sha256": "b1"},
            {"name": "m2", "family": "m2", "oof": "preds/m2/oof.csv", "test": "preds/m2/test.csv", "oof_sha256": "a2", "test_sha256": "b2"},
        ],
        "scores": {"metric": "log_loss", "higher_is_better": False, "oof": oof, "nested": nested, "ci95": list(ci)},
    }
    path.write_text(json.dumps(recipe))
    return path


@pytest.fixture
def base(tmp_path, rng):
    ids = np.array([f"{i:05d}" for i in range(200)], dtype=object)
    codes = rng.integers(0, 3, 200)
    return tmp_path, ids, codes


def test_dedup_across_row_order_id_order_and_column_names(base, rng, caplog):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    names = np.array(CLASSES, dtype=object)[codes]
    first = record_submission(write_sub(tmp / "a.csv", ids, names), ledger=ledger, note="first")
    assert first.duplicate_of is None and first.closest is None and first.entry.id == 1
    shuffled = write_sub(tmp / "b.csv", ids, names, id_col="image_id", target_col="class", order=rng.permutation(200))
    with caplog.at_level(logging.WARNING, logger="ensemble"):
        again = record_submission(shuffled, ledger=ledger, fmt=SubmissionFormat(id_col="image_id", target_col="class"))
    assert again.duplicate_of.id == 1 and again.agreement == 1.0
    assert again.entry.pred_sha256 == first.entry.pred_sha256
    assert again.entry.file_sha256 != first.entry.file_sha256  # the bytes differ, the predictions do not
    assert "IDENTICAL to submission #1" in caplog.text and "'first'" in caplog.text
    # one changed row is no longer a duplicate
    changed = names.copy()
    changed[7] = "fox" if changed[7] != "fox" else "cat"
    third = record_submission(write_sub(tmp / "c.csv", ids, changed), ledger=ledger)
    assert third.duplicate_of is None and third.agreement == pytest.approx(199 / 200)
    assert [e.id for e in list_submissions(ledger)] == [1, 2, 3]


def test_names_and_indices_are_the_same_labels_when_classes_are_known(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    recipe = write_recipe(tmp / "blends" / "w" / "recipe.json")
    by_name = write_sub(tmp / "names.csv", ids, np.array(CLASSES, dtype=object)[codes])
    by_index = write_sub(tmp / "index.csv", ids, codes)
    a = record_submission(by_name, ledger=ledger, recipe_path=recipe)
    b = record_submission(by_index, ledger=ledger, recipe_path=recipe.parent)  # the folder works too
    assert a.entry.labels_as == "class names" and b.duplicate_of.id == a.entry.id
    assert a.entry.pred_sha256 == b.entry.pred_sha256


def test_indices_without_classes_match_a_named_entry_once_reconciled(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    recipe = write_recipe(tmp / "r.json")
    record_submission(write_sub(tmp / "names.csv", ids, np.array(CLASSES, dtype=object)[codes]), ledger=ledger, recipe_path=recipe)
    b = record_submission(write_sub(tmp / "index.csv", ids, codes), ledger=ledger)  # no recipe: as written
    assert b.entry.labels_as == "as written"
    assert b.duplicate_of is not None and b.duplicate_of.id == 1 and b.agreement == 1.0


def test_without_classes_names_and_indices_differ(base):
    # the documented rule: with no classes anywhere, targets compare exactly as written
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    record_submission(write_sub(tmp / "names.csv", ids, np.array(CLASSES, dtype=object)[codes]), ledger=ledger)
    b = record_submission(write_sub(tmp / "index.csv", ids, codes), ledger=ledger)
    assert b.duplicate_of is None and b.agreement == 0.0


def test_agreement_rate_and_closest_entry_against_sklearn(base, rng):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    variants = []
    for k, n_flip in enumerate([60, 5, 30]):
        v = codes.copy()
        flip = rng.choice(200, n_flip, replace=False)
        v[flip] = (v[flip] + 1) % 3
        variants.append(v)
        record_submission(write_sub(tmp / f"v{k}.csv", ids, v, order=rng.permutation(200)), ledger=ledger)
    # a different test set is never "closest"
    record_submission(write_sub(tmp / "other.csv", [f"x{i}" for i in range(200)], codes), ledger=ledger)
    new = record_submission(write_sub(tmp / "new.csv", ids, codes), ledger=ledger)
    expected = [accuracy_score(codes, v) for v in variants]
    assert new.closest.id == 1 + int(np.argmax(expected))
    assert new.agreement == pytest.approx(max(expected))


def test_strict_refuses_a_duplicate_and_records_nothing(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    sub = write_sub(tmp / "a.csv", ids, codes)
    record_submission(sub, ledger=ledger, note="v1")
    with pytest.raises(DuplicateSubmissionError, match=r"identical to submission #1 .*'v1'.*nothing recorded"):
        record_submission(sub, ledger=ledger, strict=True)
    assert len(list_submissions(ledger)) == 1
    # strict lets a new prediction through
    codes2 = codes.copy()
    codes2[0] = (codes2[0] + 1) % 3
    assert record_submission(write_sub(tmp / "b.csv", ids, codes2), ledger=ledger, strict=True).entry.id == 2


def test_recipe_scores_members_and_hashes_are_recorded(base):
    tmp, ids, codes = base
    recipe = write_recipe(tmp / "blends" / "w" / "recipe.json")
    e = record_submission(write_sub(tmp / "a.csv", ids, codes), ledger=tmp / "l.db", recipe_path=recipe, note="w").entry
    info = read_recipe(recipe)
    assert e.recipe_sha256 == info.sha256 and e.recipe_path == str(recipe.resolve())
    assert e.oof_score == 0.81 and e.nested_score == 0.78 and e.ci95 == (0.79, 0.83) and e.honest == 0.78
    assert e.metric == "log_loss" and e.higher_is_better is False  # every recorded score names its metric
    assert [m["oof_sha256"] for m in e.members] == ["a1", "a2"] and e.method == "weighted"
    assert get_submission(1, tmp / "l.db") == e


def test_score_and_its_errors(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    record_submission(write_sub(tmp / "a.csv", ids, codes), ledger=ledger)
    e = score_submission(1, public=0.812, ledger=ledger)
    assert e.public_score == 0.812 and e.private_score is None and e.scored
    e = score_submission(1, private=0.801, ledger=ledger)
    assert (e.public_score, e.private_score) == (0.812, 0.801)  # a score not given is kept
    with pytest.raises(LedgerError, match=r"no score given; pass --public X and/or --private Y"):
        score_submission(1, ledger=ledger)
    with pytest.raises(LedgerError, match=r"no submission #9 \(the ledger holds #1..#1\); see `ens submissions list`"):
        score_submission(9, public=0.5, ledger=ledger)
    with pytest.raises(LedgerError, match=r"--public nan is not a finite number"):
        score_submission(1, public=float("nan"), ledger=ledger)


def test_diff_against_pandas(base, rng):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    recipe = write_recipe(tmp / "r.json")
    names = np.array(CLASSES, dtype=object)
    b_codes = codes.copy()
    flip = rng.choice(200, 23, replace=False)
    b_codes[flip] = (b_codes[flip] + rng.integers(1, 3, 23)) % 3
    record_submission(write_sub(tmp / "a.csv", ids, names[codes]), ledger=ledger, recipe_path=recipe)
    record_submission(write_sub(tmp / "b.csv", ids[:150], b_codes[:150], order=rng.permutation(150)), ledger=ledger, recipe_path=recipe)
    d = diff_submissions(1, 2, ledger=ledger)
    assert (d.n_common, d.only_a, d.only_b) == (150, 50, 0)
    assert d.agreement == pytest.approx(accuracy_score(codes[:150], b_codes[:150]))
    assert set(d.flipped["id"]) == set(ids[:150][codes[:150] != b_codes[:150]])
    ca = pd.Series(names[codes[:150]]).value_counts()
    cb = pd.Series(names[b_codes[:150]]).value_counts()
    assert [c["label"] for c in d.per_class] == CLASSES  # class order, not alphabetical by accident
    for c in d.per_class:
        assert (c["a"], c["b"], c["change"]) == (ca.get(c["label"], 0), cb.get(c["label"], 0), cb.get(c["label"], 0) - ca.get(c["label"], 0))
    assert len(d.to_dict(limit=3)["flipped"]) == 3 and d.to_dict()["n_flipped"] == len(d.flipped)
    record_submission(write_sub(tmp / "c.csv", ["q1", "q2"], ["cat", "dog"]), ledger=ledger)
    with pytest.raises(LedgerError, match=r"submissions #1 and #3 share no id"):
        diff_submissions(1, 3, ledger=ledger)


def test_stored_predictions_round_trip(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    record_submission(write_sub(tmp / "a.csv", ids[::-1], codes[::-1]), ledger=ledger)
    _, preds = load_predictions(1, ledger)
    assert list(preds.ids) == sorted(ids) and list(preds.labels) == [str(c) for c in codes]


def test_input_errors(base):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    with pytest.raises(LabelError, match="no such submission file"):
        record_submission(tmp / "missing.csv", ledger=ledger)
    sub = write_sub(tmp / "a.csv", ids, codes + 5)
    with pytest.raises(ClassMismatchError, match=r"labels .* in 'target' are not among the 3 classes"):
        record_submission(sub, ledger=ledger, recipe_path=write_recipe(tmp / "r.json"))
    (tmp / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad.json: recipe is not valid JSON"):
        record_submission(sub, ledger=ledger, recipe_path=tmp / "bad.json")
    bad2 = json.loads(write_recipe(tmp / "bad2.json").read_text())
    bad2["scores"]["oof"] = "high"
    (tmp / "bad2.json").write_text(json.dumps(bad2))
    with pytest.raises(ConfigError, match=r"recipe key 'scores.oof' is 'high', not a number"):
        record_submission(sub, ledger=ledger, recipe_path=tmp / "bad2.json")
    with pytest.raises(ConfigError, match=r"no such recipe"):
        record_submission(sub, ledger=ledger, recipe_path=tmp / "nope.json")
    assert not ledger.exists()  # nothing was created by failed adds
    with pytest.raises(LedgerError, match=r"no ledger here; record a submission first"):
        list_submissions(ledger)
    with pytest.raises(LedgerError, match=r"is a folder, not a ledger file"):
        list_submissions(tmp)


def test_default_ledger_lives_in_dot_ens(base, monkeypatch):
    tmp, ids, codes = base
    monkeypatch.chdir(tmp)
    monkeypatch.delenv("ENS_LEDGER")
    record_submission(write_sub(tmp / "a.csv", ids, codes))
    assert (tmp / ".ens" / "ledger.db").is_file() and len(list_submissions()) == 1


def test_ens_ledger_variable_moves_the_default(base, monkeypatch):
    tmp, ids, codes = base
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("ENS_LEDGER", str(tmp / "comp" / "ledger.db"))
    record_submission(write_sub(tmp / "a.csv", ids, codes))
    assert (tmp / "comp" / "ledger.db").is_file() and not (tmp / ".ens").exists()


@pytest.mark.parametrize("kind", ["text", "foreign_sqlite", "corrupt", "newer"])
def test_foreign_or_corrupt_ledger_is_refused_and_left_intact(base, kind):
    tmp, ids, codes = base
    ledger = tmp / "l.db"
    sub = write_sub(tmp / "a.csv", ids, codes)
    if kind == "text":
        ledger.write_text("id,label\n1,cat\n")
        match = r"not an ens ledger \(file is not a database\); it was left untouched"
    elif kind == "foreign_sqlite":
        con = sqlite3.connect(ledger)
        con.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
        con.commit()
        con.close()
        match = r"not an ens ledger \(an SQLite database of another application; tables: photos\)"
    elif kind == "corrupt":
        record_submission(sub, ledger=ledger)
        raw = bytearray(ledger.read_bytes())
        raw[100:] = b"\xff" * (len(raw) - 100)  # header intact, every page garbage
        ledger.write_bytes(bytes(raw))
        match = r"the ledger is unreadable \(database disk image is malformed\); it was left as is"
    else:
        record_submission(sub, ledger=ledger)
        con = sqlite3.connect(ledger)
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        con.commit()
        con.close()
        match = r"ledger schema 99 was written by a newer ens \(this one reads 2\); upgrade ens"
    before = ledger.read_bytes()
    for call in (
        lambda: record_submission(sub, ledger=ledger),
        lambda: list_submissions(ledger),
        lambda: score_submission(1, public=0.5, ledger=ledger),
    ):
        with pytest.raises(LedgerError, match=match):
            call()
    assert ledger.read_bytes() == before


WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from ensemble.ledger import record_submission
    tag, n, ledger, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    (folder / f"ready_{tag}").touch()
    while len(list(folder.glob("ready_*"))) < 2:  # start together, so the writes really overlap
        time.sleep(0.005)
    for i in range(n):
        p = folder / f"{tag}_{i}.csv"
        p.write_text("id,label\\n1," + tag + "\\n2," + str(i) + "\\n")
        record_submission(p, ledger=ledger, note=f"{tag}-{i}")
    """
)


def test_concurrent_writers_lose_nothing(tmp_path):
    # two processes create the ledger and insert at once; WAL + BEGIN IMMEDIATE must queue them
    ledger = tmp_path / "sub" / "l.db"
    n = 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, tag, str(n), str(ledger), str(tmp_path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = list_submissions(ledger)
    assert len(entries) == 2 * n
    assert sorted(e.note for e in entries) == sorted(f"{t}-{i}" for t in "ab" for i in range(n))
    assert sorted(e.id for e in entries) == list(range(1, 2 * n + 1))


@settings(max_examples=60, deadline=None)
@given(
    codes=st.lists(st.integers(0, 2), min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
    as_index=st.booleans(),
)
def test_normalised_hash_ignores_row_order_and_name_or_index_form(codes, seed, as_index):
    rng = np.random.default_rng(seed)
    n = len(codes)
    ids = [f"{i:03d}" for i in rng.choice(1000, n, replace=False)]
    names = [CLASSES[c] for c in codes]
    # the whole file by index or by name (a file mixing both is ambiguous and refused, as labels CSVs are)
    mixed = [str(c) if as_index else CLASSES[c] for c in codes]
    order = rng.permutation(n)
    frame = lambda i, t: pd.DataFrame({"id": i, "target": t}).sort_values("id").reset_index(drop=True)
    a = normalise_submission(frame(ids, names), CLASSES, "a.csv")
    b = normalise_submission(frame([ids[j] for j in order], [mixed[j] for j in order]), CLASSES, "b.csv")
    assert a.sha256 == b.sha256 and prediction_agreement(a, b)[0] == 1.0
    changed = list(names)
    changed[0] = CLASSES[(codes[0] + 1) % 3]
    c = normalise_submission(frame(ids, changed), CLASSES, "c.csv")
    assert c.sha256 != a.sha256 and prediction_agreement(a, c)[0] == pytest.approx(1 - 1 / n)


def test_failed_operation_leaves_a_new_empty_ledger_file(tmp_path):
    from ensemble.ledger import connect

    ledger = tmp_path / "sub" / "ledger.db"
    with connect(ledger, create=True):
        pass  # a check before the work (as `ens blend` does): nothing written, nothing created
    assert not ledger.exists() and not ledger.parent.exists()
    with pytest.raises(KeyboardInterrupt):
        with connect(ledger, create=True):
            raise KeyboardInterrupt  # an interrupted blend, before its first write
    assert not ledger.exists()
    with connect(ledger, create=True) as con:
        con.execute("SELECT COUNT(*) FROM submissions").fetchone()
    assert ledger.is_file()  # the first statement creates it, schema and all


def test_ledger_under_a_regular_file_is_refused_before_work(tmp_path):
    from ensemble.errors import OutputError
    from ensemble.ledger import connect

    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match=r"cannot write .*ledger.db: .*file.txt is a file, not a folder"):
        with connect(tmp_path / "file.txt" / "ledger.db", create=True):
            pass


def test_submission_with_other_row_count_than_the_recipes_blend_is_refused(base):
    tmp, ids, codes = base
    recipe = write_recipe(tmp / "r.json")
    raw = json.loads(recipe.read_text())
    raw["n_test"] = len(ids)
    recipe.write_text(json.dumps(raw))
    short = write_sub(tmp / "short.csv", ids[:4], codes[:4])
    with pytest.raises(LedgerError, match=rf"short.csv: 4 rows, but the blend of .*r.json has {len(ids)} test rows"):
        record_submission(short, ledger=tmp / "l.db", recipe_path=recipe)
    assert not (tmp / "l.db").exists()


def test_a_schema_1_ledger_is_migrated_and_its_scores_named_macro_f1(tmp_path):
    import sqlite3

    from ensemble.ledger import _db

    p = tmp_path / "old.db"
    con = sqlite3.connect(p, isolation_level=None)
    for stmt in _db._SCHEMA:  # the schema of version 1: today's, with the old score columns
        con.execute(stmt.replace("metric TEXT,\n        higher_is_better INTEGER,\n", "")
                    .replace("oof_score", "oof_macro_f1").replace("nested_score", "nested_macro_f1"))
    con.execute(f"PRAGMA application_id = {_db.APP_ID}")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("app", _db.APP_NAME), ("schema_version", "1")])
    con.execute(
        "INSERT INTO submissions (path, file_sha256, pred_sha256, ids_sha256, n_rows, labels_as, vocab, codes, "
        "recipe_sha256, oof_macro_f1, nested_macro_f1, created) VALUES ('a.csv', 'f', 'p', 'i', 1, 'as written', "
        "'[\"x\"]', x'', 'r', 0.8, 0.7, '2026-01-01')"
    )
    con.close()
    (e,) = list_submissions(p)
    assert (e.metric, e.higher_is_better, e.oof_score, e.nested_score) == ("macro_f1", True, 0.8, 0.7)
    with sqlite3.connect(p) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(_db.SCHEMA_VERSION)

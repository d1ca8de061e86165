"""Recipes: exact round trip, hash policy, submission format, all-or-nothing outputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ensemble.blend import apply_recipe, blend, write_blend
from ensemble.blend import recipe as R
from ensemble.errors import ConfigError, OutputExistsError
from ensemble.submission import SubmissionFormat
from ensemble.tables import make_table, write_table

RECIPE_KEYS = {"method", "members", "units", "weights", "bias", "classes", "options", "scores", "folds_source",
               "tool_version", "created"}
SCORE_KEYS = {"oof_macro_f1", "nested_macro_f1", "ci95", "best_single", "nested_gain_over_best_single", "within_noise"}
OPTION_KEYS = {"top", "seed_average", "tune_bias", "rounds", "seed", "all_classes"}


@pytest.mark.parametrize("method,opts", [
    ("soft", {}), ("hard", {"top": 3}), ("rank", {}), ("geometric", {"weights": [1, 2, 0, 1, 1, 1]}),
    ("weighted", {"tune_bias": True}), ("greedy", {"rounds": 12, "seed_average": True}), ("soft", {"tune_bias": True}),
])
def test_apply_recipe_reproduces_the_blend_exactly(small_tables, tmp_path, method, opts):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method=method, test_tables=test, nested=False, n_boot=50, **opts)
    paths = write_blend(r, tmp_path / "blends" / "b")
    again = apply_recipe(paths["recipe"], oof, test)
    np.testing.assert_array_equal(again.oof.probs, r.oof.probs)
    np.testing.assert_array_equal(again.test.probs, r.test.probs)
    # and through the files: the written tables hold the same numbers
    from ensemble.tables import read_table

    np.testing.assert_array_equal(read_table(paths["test"]).probs, r.test.probs)


def test_recipe_keys_and_member_hashes(small_tables, tmp_path):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="weighted", test_tables=test, tune_bias=True, n_boot=50)
    paths = write_blend(r, tmp_path / "b")
    rec = json.loads(paths["recipe"].read_text())
    assert RECIPE_KEYS <= set(rec) and SCORE_KEYS <= set(rec["scores"]) and OPTION_KEYS <= set(rec["options"])
    assert set(rec["scores"]["best_single"]) == {"name", "oof_macro_f1", "nested_macro_f1"}
    assert rec["folds_source"] == "labels" and len(rec["bias"]) == len(rec["classes"])
    assert len(rec["weights"]) == len(rec["units"]) and sum(rec["weights"]) == pytest.approx(1.0)
    by_name = {t.name: (t, u) for t, u in zip(oof, test)}
    for m in rec["members"]:
        t, u = by_name[m["name"]]
        assert m["oof_sha256"] == t.file_sha256() and m["test_sha256"] == u.file_sha256()
        assert m["oof"] == str(t.path.resolve()) and m["family"] == t.family
    meta = json.loads((tmp_path / "b" / "oof.json").read_text())
    assert meta["model"] == "blend" and meta["method"] == "weighted" and meta["kind"] == "oof"


def test_changed_tables_warn_or_are_refused_when_strict(small_tables, tmp_path, caplog):
    oof, test, lab, dirs, _ = small_tables
    r = blend(oof, lab, method="soft", test_tables=test, nested=False, n_boot=50)
    paths = write_blend(r, tmp_path / "b")
    changed = test[0].probs.copy()
    changed[0] = changed[0][::-1]
    write_table(make_table(test[0].ids, test[0].classes, changed, meta=test[0].meta), dirs[0] / "test.csv", force=True)
    from ensemble.blend.folders import read_members

    oof2, test2 = read_members(dirs)
    with caplog.at_level(logging.WARNING, logger="ensemble"):
        again = apply_recipe(paths["recipe"], oof2, test2)
    assert f"{oof[0].name} (test)" in caplog.text and "differ from the ones the recipe was fitted on" in caplog.text
    assert not np.array_equal(again.test.probs, r.test.probs)
    with pytest.raises(ConfigError, match=r"differ from the ones the recipe was fitted on .*re-fit the blend"):
        apply_recipe(paths["recipe"], oof2, test2, strict=True)


def test_missing_member_is_named(small_tables, tmp_path):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="soft", test_tables=test, nested=False, n_boot=50)
    paths = write_blend(r, tmp_path / "b")
    with pytest.raises(ConfigError, match=f'recipe needs members "{oof[2].name}" that were not given'):
        apply_recipe(paths["recipe"], oof[:2] + oof[3:], test[:2] + test[3:])


@pytest.mark.parametrize("fmt", [SubmissionFormat(), SubmissionFormat("image_id", "species", "index")])
def test_submission_format(small_tables, tmp_path, fmt):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="soft", test_tables=test, nested=False, n_boot=50)
    write_blend(r, tmp_path / "b", submission=tmp_path / "sub.csv", fmt=fmt)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert list(sub.columns) == [fmt.id_col, fmt.target_col]
    assert sub[fmt.id_col].tolist() == list(test[0].ids)
    pred = r.test.probs.argmax(1)
    expect = pred.astype(str) if fmt.target_format == "index" else np.array(r.classes)[pred]
    assert sub[fmt.target_col].tolist() == list(expect)


def test_outputs_are_all_or_nothing(small_tables, tmp_path, monkeypatch):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="soft", test_tables=test, nested=False, n_boot=50)
    (tmp_path / "sub.csv").write_text("already here\n")
    with pytest.raises(OutputExistsError, match="sub.csv exists; pass --force"):
        write_blend(r, tmp_path / "b", submission=tmp_path / "sub.csv")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(R, "write_submission", boom)
    with pytest.raises(RuntimeError):
        write_blend(r, tmp_path / "c", submission=tmp_path / "sub2.csv")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    assert not (tmp_path / "sub2.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_seed_method_writes_a_folder_per_family(small_tables, tmp_path):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="seed", test_tables=test, n_boot=50)
    paths = write_blend(r, tmp_path / "s")
    fams = list(dict.fromkeys(t.family for t in oof))
    assert all((tmp_path / "s" / f / "oof.csv").is_file() and (tmp_path / "s" / f / "test.csv").is_file() for f in fams)
    rec = json.loads(paths["recipe"].read_text())
    assert rec["units"] == fams and rec["weights"] is None
    again = apply_recipe(paths["recipe"], oof, test)
    for a, b in zip(again.unit_test, r.unit_test):
        np.testing.assert_array_equal(a.probs, b.probs)
    with pytest.raises(ConfigError, match="one table per family"):
        write_blend(r, tmp_path / "s2", submission=tmp_path / "x.csv")

"""Recipes: exact round trip, hash policy, submission format, all-or-nothing outputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ensemble.blend import apply_recipe, blend, write_blend
from ensemble.blend import write as W
from ensemble.errors import ConfigError, OutputExistsError
from ensemble.submission import SubmissionFormat
from ensemble.tables import make_table, write_table

RECIPE_KEYS = {"method", "members", "units", "weights", "bias", "classes", "options", "scores", "folds_source",
               "tool_version", "created"}
SCORE_KEYS = {"metric", "higher_is_better", "oof", "nested", "ci95", "best_single", "nested_gain_over_best_single", "within_noise"}
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
    assert set(rec["scores"]["best_single"]) == {"name", "oof", "nested"}
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

    monkeypatch.setattr(W, "write_submission", boom)
    with pytest.raises(RuntimeError):
        write_blend(r, tmp_path / "c", submission=tmp_path / "sub2.csv")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    assert not (tmp_path / "sub2.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_by_family_writes_a_blend_folder_per_family(small_tables, tmp_path):
    from ensemble.blend.core import BlendOptions
    from ensemble.blend.folders import blend_folders
    from ensemble.tables import read_table

    oof, test, lab, dirs, labels_csv = small_tables
    written = blend_folders(dirs, out=tmp_path / "s", labels=labels_csv, options=BlendOptions("soft", nested=False, n_boot=20), by_family=True)
    fams = list(dict.fromkeys(t.family for t in oof))
    assert [w.result.name for w in written] == fams
    for f in fams:
        expect = np.mean([t.probs for t in test if t.family == f], axis=0)
        np.testing.assert_allclose(read_table(tmp_path / "s" / f / "test.csv").probs, expect, rtol=1e-5, atol=1e-7)
        again = apply_recipe(tmp_path / "s" / f / "recipe.json", oof, test)  # each family folder is a blend of its own
        np.testing.assert_array_equal(again.test.probs, [w for w in written if w.result.name == f][0].result.test.probs)
    with pytest.raises(ConfigError, match="one blend per family"):
        blend_folders(dirs, out=tmp_path / "s2", labels=labels_csv, options=BlendOptions("soft"), by_family=True,
                      submission=tmp_path / "x.csv")

def test_parquet_prediction_folders_blend_like_csv_ones(small_tables, tmp_path):
    from ensemble.blend.folders import read_members
    from ensemble.tables import read_table

    oof, test, lab, dirs, _ = small_tables
    pq = []
    for d in dirs:
        o, t = read_table(d / "oof.csv"), read_table(d / "test.csv", kind="test")
        out = tmp_path / "pq" / d.name
        write_table(o, out / "oof.parquet")
        write_table(t, out / "test.parquet")
        pq.append(out)
    po, pt = read_members(pq)
    a = blend(oof, lab, method="weighted", test_tables=test, nested=False, n_boot=20)
    b = blend(po, lab, method="weighted", test_tables=pt, nested=False, n_boot=20)
    np.testing.assert_array_equal(a.test.probs, b.test.probs)

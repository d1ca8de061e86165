"""The one Recipe record: JSON round trip, and hand-edited recipes refused by key, never reinterpreted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.blend import apply_recipe, blend, write_blend
from ensemble.errors import ConfigError
from ensemble.recipe import Recipe, read_recipe
from tests.blend.conftest import small, small_tables  # noqa: F401  (the blend tests' fixtures)


@pytest.fixture
def written(small_tables, tmp_path):
    oof, test, lab, *_ = small_tables
    r = blend(oof, lab, method="weighted", test_tables=test, tune_bias=True, n_boot=30)
    paths = write_blend(r, tmp_path / "b")
    return r, paths, oof, test


def test_recipe_round_trips_through_json(written):
    r, paths, *_ = written
    rec = read_recipe(paths["recipe"])
    assert rec == Recipe.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert rec.to_dict() == json.loads(paths["recipe"].read_text())
    assert rec.scores == r.scores and rec.weights == pytest.approx(r.fitted.weights.tolist())
    assert rec.n_test == len(r.test) and rec.labels is not None and rec.labels.path.endswith("train.csv")


def _edit(paths, change):
    raw = json.loads(paths["recipe"].read_text())
    change(raw)
    paths["recipe"].write_text(json.dumps(raw))
    return paths["recipe"]


@pytest.mark.parametrize("change,message", [
    (lambda r: r["weights"].__setitem__(0, -0.5), "recipe key 'weights' holds a negative weight"),
    (lambda r: r.__setitem__("weights", r["weights"][:-1]), "recipe key 'weights' has 5 values for 6 units"),
    (lambda r: r.__setitem__("weights", "0.5,0.5"), "recipe key 'weights' is '0.5,0.5', not a list"),
    (lambda r: r["weights"].__setitem__(1, "x"), "recipe key 'weights' holds 'x', not a finite number"),
    (lambda r: r.__setitem__("weights", [0.0] * len(r["weights"])), "recipe key 'weights' are all zero"),
    (lambda r: r.__setitem__("bias", r["bias"][:2]), "recipe key 'bias' has 2 values for 5 classes"),
    (lambda r: r["bias"].__setitem__(0, True), "recipe key 'bias' holds True, not a finite number"),
    (lambda r: r.__setitem__("units", []), "recipe key 'units' is empty"),
    (lambda r: r.pop("classes"), "recipe key 'classes' is missing"),
    (lambda r: r.__setitem__("method", "seedy"), "recipe key 'method' is 'seedy', not a blend method"),
    (lambda r: r["unit_members"].pop(r["units"][0]), "recipe key 'unit_members."),
    (lambda r: r["scores"].__setitem__("oof", "high"), "recipe key 'scores.oof' is 'high'"),
    (lambda r: r.__setitem__("members", r["members"][1:]), "recipe key 'members' lacks"),
])
def test_hand_edited_recipe_that_does_not_validate_is_refused_naming_the_key(written, change, message):
    _, paths, oof, test = written
    bad = _edit(paths, change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        apply_recipe(bad, oof, test)
    assert str(bad) in str(e.value)
    assert "\n" not in str(e.value)


def test_recipe_with_zero_weight_units_needs_only_the_weighted_members(written):
    r, paths, oof, test = written
    raw = json.loads(paths["recipe"].read_text())
    raw["weights"] = [1.0] + [0.0] * (len(raw["weights"]) - 1)
    paths["recipe"].write_text(json.dumps(raw))
    again = apply_recipe(paths["recipe"], oof, test)
    first = raw["unit_members"][raw["units"][0]]
    expect = np.mean([t.probs for t in test if t.name in first], axis=0)
    from ensemble.blend.bias import apply_bias

    np.testing.assert_allclose(again.test.probs, apply_bias(expect, np.asarray(raw["bias"])), rtol=1e-5, atol=1e-7)


def test_missing_recipe_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe; give the recipe.json"):
        read_recipe(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="recipe must hold a JSON object"):
        read_recipe(tmp_path / "bad.json")


@pytest.mark.parametrize("change,message", [
    (lambda r: r.__setitem__("pool", "cubic"), "recipe key 'pool' is 'cubic'; choose linear or log"),
    (lambda r: r.__setitem__("temperature", -1.0), "recipe key 'temperature' is -1; a temperature is > 0"),
])
def test_hand_edited_calibration_is_refused_naming_the_key(written, change, message):
    _, paths, oof, test = written
    with pytest.raises(ConfigError, match=message):
        apply_recipe(_edit(paths, change), oof, test)


@pytest.mark.parametrize("change,message", [
    (lambda r: r.__setitem__("task", "multiclassy"), "recipe key 'task' is 'multiclassy'; choose multiclass or multilabel"),
    (lambda r: r.__setitem__("thresholds", [0.5] * 5), "recipe key 'thresholds' are given for a multiclass blend; thresholds decide multi-label classes only"),
    (lambda r: r.update(task="multilabel", thresholds=[0.5] * 4), "recipe key 'thresholds' has 4 values for 5 classes"),
    (lambda r: r.update(task="multilabel", thresholds=[0.5, 0.2, 1.0, 0.3, 0.4]),
     "recipe key 'thresholds' holds 1; a threshold is a probability strictly between 0 and 1"),
    (lambda r: r.update(task="multilabel", threshold_mode="sometimes"),
     "recipe key 'threshold_mode' is 'sometimes'; choose per-class or global"),
])
def test_hand_edited_task_and_thresholds_are_refused_naming_the_key(written, change, message):
    _, paths, *_ = written
    raw = json.loads(paths["recipe"].read_text())
    change(raw)
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict(raw)


def test_recipes_before_multilabel_load_as_multiclass_without_thresholds(written):
    _, paths, *_ = written
    raw = json.loads(paths["recipe"].read_text())
    for key in ("task", "thresholds", "threshold_mode"):
        raw.pop(key)
    raw["labels"].pop("label_sep")
    rec = Recipe.from_dict(raw)
    assert rec.task == "multiclass" and rec.thresholds is None and rec.threshold_mode is None
    assert rec.labels.label_sep == "|"
    ml = Recipe.from_dict({**raw, "task": "multilabel", "thresholds": [0.1, 0.2, 0.3, 0.4, 0.5], "threshold_mode": "per-class"})
    assert ml.thresholds == [0.1, 0.2, 0.3, 0.4, 0.5] and ml.to_dict()["threshold_mode"] == "per-class"

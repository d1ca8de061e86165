from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ensemble import make_table, write_table
from ensemble.errors import AlignmentError, ConfigError, LedgerError
from ensemble.labels import read_labels
from ensemble.ledger import record_submission, score_submission
from ensemble.select import load_candidates, select_finals, select_submissions

CLASSES = ["a", "b", "c", "d"]
N = 1200


# --- planted blends ---


def noisy(rng: np.random.Generator, y: np.ndarray, wrong: float) -> np.ndarray:
    """Predictions equal to `y` except on a `wrong` share of rows, which get another class."""
    pred = y.copy()
    bad = rng.choice(len(y), int(round(wrong * len(y))), replace=False)
    pred[bad] = (y[bad] + rng.integers(1, len(CLASSES), len(bad))) % len(CLASSES)
    return pred


def one_hot_probs(pred: np.ndarray) -> np.ndarray:
    c = len(CLASSES)
    probs = np.full((len(pred), c), 0.1 / (c - 1), dtype=np.float64)
    probs[np.arange(len(pred)), pred] = 0.9
    return probs


def make_blend(root: Path, name: str, ids, oof_pred, test_ids, test_pred, *, nested: float | None) -> Path:
    """A blend folder as `ens blend` writes it: oof.csv, test.csv, recipe.json."""
    folder = root / "blends" / name
    write_table(make_table(ids, CLASSES, one_hot_probs(oof_pred), meta={"model": name}), folder / "oof.csv")
    write_table(make_table(test_ids, CLASSES, one_hot_probs(test_pred), meta={"model": name}), folder / "test.csv")
    recipe = {
        "method": "weighted", "classes": CLASSES, "members": [{"name": name, "oof_sha256": name, "test_sha256": name}],
        "units": [name], "unit_members": {name: [name]}, "weights": [1.0],
        "scores": {"metric": "macro_f1", "higher_is_better": True, "oof": 0.0, "nested": nested, "ci95": [0.0, 1.0]},
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder / "recipe.json"


def submit(root: Path, recipe: Path, name: str, *, change: float = 0.0) -> Path:
    """The submission a blend folder's test table makes (its first `change` share of rows moved one class on)."""
    t = pd.read_csv(recipe.parent / "test.csv", dtype={"id": str})
    pred = t[CLASSES].to_numpy().argmax(1)
    k = int(round(change * len(pred)))
    pred[:k] = (pred[:k] + 1) % len(CLASSES)
    pd.DataFrame({"id": t["id"], "label": np.array(CLASSES)[pred]}).to_csv(root / name, index=False)
    return root / name


@pytest.fixture
def world(tmp_path):
    """Labels plus four blends: an honest leader, a lucky overfit, a copy of the leader, a diverse one."""
    rng = np.random.default_rng(3)
    ids = np.array([f"{i:05d}" for i in range(N)], dtype=object)
    y = rng.integers(0, len(CLASSES), N)
    pd.DataFrame({"id": ids, "label": np.array(CLASSES)[y], "fold": np.arange(N) % 5}).to_csv(tmp_path / "train.csv", index=False)
    test_ids = np.array([f"t{i}" for i in range(300)], dtype=object)
    ty = rng.integers(0, len(CLASSES), 300)
    lead = noisy(rng, y, 0.20)
    recipes = {
        "leader": make_blend(tmp_path, "leader", ids, lead, test_ids, noisy(rng, ty, 0.2), nested=None),
        # fit in-sample: only 8% wrong on OOF, but its nested estimate says 0.70
        "overfit": make_blend(tmp_path, "overfit", ids, noisy(rng, y, 0.08), test_ids, noisy(rng, ty, 0.3), nested=0.70),
        # the same OOF predictions as the leader, a hair lower honest estimate: it hedges nothing
        "copy": make_blend(tmp_path, "copy", ids, lead, test_ids, noisy(rng, ty, 0.2), nested=None),
        # independent errors, a little worse
        "diverse": make_blend(tmp_path, "diverse", ids, noisy(rng, y, 0.215), test_ids, noisy(rng, ty, 0.2), nested=None),
    }
    honest_leader = f1_score(y, lead, average="macro")
    recipes_json = json.loads(recipes["copy"].read_text())
    recipes_json["scores"]["nested"] = honest_leader - 0.002
    recipes["copy"].write_text(json.dumps(recipes_json))
    return tmp_path, recipes, y


def test_lucky_overfit_ranks_below_its_honest_estimate(world):
    root, recipes, y = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=2, n_boot=500)
    by = {c.name: c for c in sel.candidates}
    assert by["overfit"].oof > by["leader"].oof  # the planted trap: best in-sample
    assert sel.picks[0].name == "leader" and by["leader"].pick == 1
    assert by["overfit"].honest == 0.70 and by["overfit"].pick is None
    names = [c.name for c in sel.candidates]
    assert names.index("overfit") > names.index("leader")
    assert by["overfit"].p_best < 0.01 and by["overfit"].diff_ci95[1] < 0  # centred on its nested estimate
    assert by["leader"].honest == by["leader"].oof  # no nested estimate: in-sample is honest


def test_second_pick_hedges_instead_of_copying_the_first(world):
    root, recipes, _ = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=2, n_boot=1000)
    by = {c.name: c for c in sel.candidates}
    assert by["copy"].honest > by["diverse"].honest  # ranking by score alone would pick the copy
    assert [p.name for p in sel.picks] == ["leader", "diverse"]
    assert sel.picks[1].gain > 0
    assert sel.oof_agreement[0][0] == 1.0 and sel.oof_agreement[0][1] < 0.8
    # the copy can never beat the leader on a resample: it adds exactly nothing to the best-of-2
    assert by["copy"].p_beats_leader == 0.0 and by["copy"].diff_ci95 == pytest.approx((-0.002, -0.002))


def test_probabilities_and_differences_follow_the_paired_bootstrap(world):
    from ensemble.bootstrap import bootstrap_scores

    root, recipes, y = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=3, n_boot=400, seed=11)
    order = list(recipes)
    preds = np.stack(
        [pd.read_csv(recipes[k].parent / "oof.csv", dtype={"id": str})[CLASSES].to_numpy().argmax(1) for k in order]
    )
    boot = bootstrap_scores(y, preds, n_classes=4, n_boot=400, seed=11)
    ins = np.array([f1_score(y, p, average="macro") for p in preds])
    by = {c.name: c for c in sel.candidates}
    honest = np.array([by[k].honest for k in order])
    np.testing.assert_allclose([by[k].oof for k in order], ins, rtol=1e-12)
    sim = boot - (ins - honest)[:, None]
    winners = sim == sim.max(0)
    p_best = (winners / winners.sum(0)).mean(1)
    np.testing.assert_allclose([by[k].p_best for k in order], p_best, atol=1e-12)
    assert sum(c.p_best for c in sel.candidates) == pytest.approx(1.0)
    lead = order.index("leader")
    d = sim[order.index("diverse")] - sim[lead]
    assert by["diverse"].diff_ci95 == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    assert by["leader"].diff_to_leader == 0.0 and by["leader"].diff_ci95 == (0.0, 0.0)
    # expected best-of-3 after the third pick
    picks = [order.index(p.name) for p in sel.picks]
    assert sel.picks[2].expected_best_of == pytest.approx(sim[picks].max(0).mean())


def test_seeded_and_reproducible(world):
    root, recipes, _ = world
    run = lambda seed: select_submissions(root / "train.csv", recipes=list(recipes.values()), n=2, n_boot=300, seed=seed).to_dict()
    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert [x["p_best"] for x in a["candidates"]] != [x["p_best"] for x in c["candidates"]]


def test_test_agreement_between_picks(world):
    root, recipes, _ = world
    sel = select_submissions(root / "train.csv", recipes=list(recipes.values()), n=2, n_boot=100)
    t = [pd.read_csv(recipes[p.name].parent / "test.csv", dtype={"id": str})[CLASSES].to_numpy().argmax(1) for p in sel.picks]
    assert sel.test_agreement[0][1] == pytest.approx(accuracy_score(t[0], t[1]))
    assert sel.test_agreement[1][0] == sel.test_agreement[0][1] and sel.test_agreement[0][0] == 1.0


def test_public_lb_disagreement_is_reported(world):
    root, recipes, _ = world
    ledger = root / "l.db"
    for i, name in enumerate(["leader", "overfit", "diverse"], 1):
        record_submission(submit(root, recipes[name], f"{name}.csv"), ledger=ledger, recipe_path=recipes[name])
    score_submission(1, public=0.79, ledger=ledger)
    score_submission(2, public=0.83, ledger=ledger)  # the public LB likes the overfit
    score_submission(3, public=0.78, ledger=ledger)
    sel = select_submissions(root / "train.csv", ledger=ledger, recipes=list(recipes.values()), n=2, n_boot=300)
    assert {(d.public_prefers, d.oof_prefers) for d in sel.lb_disagreements} == {("overfit", "leader"), ("overfit", "diverse")}
    d = next(d for d in sel.lb_disagreements if d.oof_prefers == "leader")
    assert d.public_gap == pytest.approx(0.04) and d.p_oof_right > 0.99
    by = {c.name: c for c in sel.candidates}
    assert (by["overfit"].public_score, by["overfit"].entry_id) == (0.83, 2)
    assert by["copy"].public_score is None


def test_candidates_from_the_ledger(world, caplog):
    root, recipes, _ = world
    ledger = root / "l.db"
    test_ids = pd.read_csv(recipes["leader"].parent / "test.csv", dtype={"id": str})["id"]
    for name in ("leader", "diverse", "overfit"):
        sub = root / f"{name}.csv"
        pd.DataFrame({"id": test_ids, "label": "a" if name == "leader" else "b"}).to_csv(sub, index=False)
        record_submission(sub, ledger=ledger, recipe_path=recipes[name])
    record_submission(root / "leader.csv", ledger=ledger, recipe_path=recipes["leader"])  # same recipe twice: one candidate
    recipes["overfit"].write_text(recipes["overfit"].read_text().replace("0.7", "0.71"))  # changed since
    with caplog.at_level(logging.WARNING, logger="ensemble"):
        cands = load_candidates(ledger=ledger)
    assert [c.name for c in cands] == ["leader", "diverse"]
    assert "skipping submission #3: its recipe" in caplog.text and "changed since it was recorded" in caplog.text
    assert cands[0].entry_id == 4 and set(cands[0].test.labels) == {"a"}  # the submitted predictions
    sel = select_submissions(root / "train.csv", ledger=ledger, n=2, n_boot=100)
    assert [p.name for p in sel.picks] == ["leader", "diverse"]
    for name in ("leader", "diverse"):
        (recipes[name]).unlink()
    with pytest.raises(LedgerError, match=r"no submission with a usable recipe among 4 entries"):
        load_candidates(ledger=ledger)


def test_errors(world, tmp_path):
    root, recipes, _ = world
    labels = root / "train.csv"
    rec = list(recipes.values())
    with pytest.raises(ConfigError, match=r"--n 5 but there are 4 candidates; choose --n between 1 and 4"):
        select_submissions(labels, recipes=rec, n=5)
    with pytest.raises(ConfigError, match=r"--n 0 but there are 4 candidates"):
        select_submissions(labels, recipes=rec, n=0)
    with pytest.raises(ConfigError, match=r"--n-boot 5 is too few resamples; use at least 10"):
        select_submissions(labels, recipes=rec, n_boot=5)
    with pytest.raises(ConfigError, match=r"no candidates to select from"):
        select_finals([], read_labels(labels))
    short = tmp_path / "short.csv"
    pd.read_csv(labels, dtype=str).head(10).to_csv(short, index=False)
    with pytest.raises(AlignmentError, match=r"ids are not in .*short.csv"):
        select_submissions(short, recipes=rec)
    nolabel = tmp_path / "nolabel.csv"
    pd.read_csv(labels, dtype=str)[["id"]].to_csv(nolabel, index=False)
    with pytest.raises(Exception, match=r"no label column"):
        select_submissions(nolabel, recipes=rec)
    with pytest.raises(LedgerError, match=r"no ledger here"):
        select_submissions(labels, ledger=tmp_path / "none.db")

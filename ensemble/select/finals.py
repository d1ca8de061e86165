"""Choosing the final N submissions on evidence: an honest leader, then hedges.

The simulated private leaderboard: the OOF rows are resampled with replacement (`n_boot` times, the
same rows for every candidate: a paired bootstrap), each candidate's macro-F1 is computed on each
resample, and each candidate's scores are shifted down by its optimism (in-sample OOF macro-F1 minus
its nested estimate; zero for methods that fit nothing). So the resamples carry the real noise and
the real correlation between candidates, centred on the honest estimates: a blend whose in-sample
score was lucky (overfit weights) does not win resamples it would not win on new data.

Pick 1 is the best honest estimate. Each next pick is the candidate that maximises the expected
best-of-picks score over the resamples, E[max_j score_j]: a near copy of an earlier pick adds
nothing to that maximum, a different blend of similar quality adds the most, so it hedges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ensemble.errors import ConfigError
from ensemble.join import join_labels
from ensemble.labels import Labels
from ensemble.ledger.submission_rows import prediction_agreement
from ensemble.select.candidates import Candidate

MIN_BOOT = 10


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's evidence.

    Attributes:
        name, entry_id: which candidate (and its ledger entry, if any).
        oof_macro_f1: in-sample OOF macro-F1 on the labels.
        nested_macro_f1: the recipe's nested estimate, or None.
        honest: nested when present, else in-sample.
        p_best: share of resamples where it scores highest (ties shared).
        diff_to_leader: mean paired-bootstrap difference to the leader (honest-centred).
        diff_ci95: 2.5 and 97.5 percentiles of that difference.
        p_beats_leader: share of resamples where it beats the leader.
        public_score, private_score: leaderboard scores from the ledger.
        pick: 1-based pick order, or None when not picked.
    """

    name: str
    entry_id: int | None
    oof_macro_f1: float
    nested_macro_f1: float | None
    honest: float
    p_best: float
    diff_to_leader: float
    diff_ci95: tuple[float, float]
    p_beats_leader: float
    public_score: float | None
    private_score: float | None
    pick: int | None


@dataclass(frozen=True)
class Pick:
    """A chosen final: `expected_best_of` is E[max over picks so far] after adding it."""

    name: str
    expected_best_of: float
    gain: float
    reason: str


@dataclass(frozen=True)
class LBDisagreement:
    """A pair ranked one way by the public leaderboard and the other by the honest OOF estimate.

    Attributes:
        public_prefers, oof_prefers: the names.
        public_gap: public score difference (preferred minus other), > 0.
        honest_gap: honest OOF difference (preferred minus other), > 0.
        p_oof_right: share of resamples where the OOF-preferred one scores higher.
    """

    public_prefers: str
    oof_prefers: str
    public_gap: float
    honest_gap: float
    p_oof_right: float


@dataclass(frozen=True)
class Selection:
    """Everything `ens select` shows.

    Attributes:
        candidates: evidence per candidate, best honest estimate first.
        picks: the finals, in pick order.
        test_agreement: pairwise share of equal test predictions between picks (None where a pick
            has no test predictions or they share no id), shape (n, n).
        oof_agreement: pairwise share of equal OOF argmax between picks, shape (n, n).
        lb_disagreements: pairs the public leaderboard ranks against the honest OOF estimate.
        n_rows, n_boot, seed, all_classes: what the simulation used.
    """

    candidates: list[CandidateScore]
    picks: list[Pick]
    test_agreement: list[list[float | None]]
    oof_agreement: list[list[float]]
    lb_disagreements: list[LBDisagreement]
    n_rows: int
    n_boot: int
    seed: int
    all_classes: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_finals(
    candidates: Sequence[Candidate],
    labels: Labels,
    *,
    n: int = 2,
    n_boot: int = 2000,
    seed: int = 42,
    all_classes: bool = False,
    classes: Sequence[str] | None = None,
) -> Selection:
    """Choose `n` finals among `candidates` on a simulated private leaderboard (module docstring).

    Args:
        candidates: the blends, each with an OOF table covering the labelled ids.
        labels: the training labels (with `y`), classes in the tables' class set.
        n: how many finals to choose.
        n_boot: bootstrap resamples of the OOF rows.
        seed: seeds the resamples; the same seed gives the same selection.
        all_classes: macro-F1 over all classes instead of those present (see `ensemble.metrics`).
        classes: the class order integer labels refer to (default: the tables' recorded order).

    Raises:
        ConfigError: no candidates, `n` outside 1..len(candidates), `n_boot` too small.
        AlignmentError, ClassMismatchError: an OOF table does not cover the labels' ids or classes.
    """
    from ensemble.bootstrap import bootstrap_scores
    from ensemble.metrics import argmax, macro_f1

    k = len(candidates)
    if k == 0:
        raise ConfigError("no candidates to select from; give recipes or record blends in the ledger")
    if not 1 <= n <= k:
        raise ConfigError(f"--n {n} but there are {k} candidates; choose --n between 1 and {k}")
    if n_boot < MIN_BOOT:
        raise ConfigError(f"--n-boot {n_boot} is too few resamples; use at least {MIN_BOOT} (2000 is a good default)")
    if labels.y is None:
        raise ConfigError(f"{labels.source}: no label column; `ens select` scores OOF predictions against labels")
    joined = join_labels(labels, [c.oof for c in candidates], classes=classes)
    tables, y = joined.tables, joined.y
    n_classes = len(joined.classes)
    preds = np.stack([argmax(t.probs) for t in tables])  # (k, n_rows)
    insample = np.array([macro_f1(y, p, n_classes=n_classes, all_classes=all_classes) for p in preds])
    nested = [c.nested_macro_f1 for c in candidates]
    honest = np.array([insample[i] if nested[i] is None else nested[i] for i in range(k)], dtype=np.float64)

    boot = bootstrap_scores(y, preds, n_classes=n_classes, n_boot=n_boot, seed=seed, all_classes=all_classes)
    sim = np.asarray(boot, dtype=np.float64).reshape(k, n_boot) - (insample - honest)[:, None]  # (k, B)

    is_max = sim == sim.max(axis=0, keepdims=True)
    p_best = (is_max / is_max.sum(axis=0, keepdims=True)).mean(axis=1)
    leader = int(np.lexsort((-p_best, -honest))[0])  # best honest estimate; P(best) breaks ties
    diff = sim - sim[leader]  # (k, B)
    lo, hi = np.percentile(diff, [2.5, 97.5], axis=1)

    picks = _greedy_picks(sim, honest, leader, n)
    pick_objs = []
    prev = None
    for i, j in enumerate(picks):
        best_of = float(sim[picks[: i + 1]].max(axis=0).mean())
        if prev is None:
            reason = f"best honest estimate ({'nested' if nested[j] is not None else 'in-sample'} OOF macro-F1 {honest[j]:.4f})"
        elif best_of > prev:
            reason = f"raises the expected best-of-{i + 1} macro-F1 from {prev:.4f} to {best_of:.4f}"
        else:
            reason = f"adds nothing to the expected best-of-{i + 1} ({best_of:.4f}); the best remaining honest estimate"
        pick_objs.append(Pick(candidates[j].name, best_of, 0.0 if prev is None else best_of - prev, reason))
        prev = best_of

    order = np.lexsort((-p_best, -honest))
    rank = {j: i + 1 for i, j in enumerate(picks)}
    scores = [
        CandidateScore(
            name=candidates[j].name, entry_id=candidates[j].entry_id, oof_macro_f1=float(insample[j]),
            nested_macro_f1=nested[j], honest=float(honest[j]), p_best=float(p_best[j]),
            diff_to_leader=float(diff[j].mean()), diff_ci95=(float(lo[j]), float(hi[j])),
            p_beats_leader=float((diff[j] > 0).mean()), public_score=candidates[j].public_score,
            private_score=candidates[j].private_score, pick=rank.get(int(j)),
        )
        for j in order
    ]
    return Selection(
        candidates=scores,
        picks=pick_objs,
        test_agreement=[[_test_agreement(candidates[a], candidates[b]) for b in picks] for a in picks],
        oof_agreement=[[float(np.mean(preds[a] == preds[b])) for b in picks] for a in picks],
        lb_disagreements=_lb_disagreements(candidates, honest, sim),
        n_rows=len(y), n_boot=n_boot, seed=seed, all_classes=all_classes,
    )


def _greedy_picks(sim: np.ndarray, honest: np.ndarray, leader: int, n: int) -> list[int]:
    """Leader first, then each candidate maximising E[max over picks] (honest estimate breaks ties)."""
    picks = [leader]
    best_of = sim[leader].copy()  # (B,)
    for _ in range(n - 1):
        rest = np.array([j for j in range(len(sim)) if j not in picks])
        gains = np.maximum(sim[rest], best_of).mean(axis=1)  # (len(rest),)
        j = int(rest[np.lexsort((-honest[rest], -gains))[0]])
        picks.append(j)
        best_of = np.maximum(best_of, sim[j])
    return picks


def _test_agreement(a: Candidate, b: Candidate) -> float | None:
    if a.test is None or b.test is None:
        return None
    return prediction_agreement(a.test, b.test)[0]


def _lb_disagreements(candidates: Sequence[Candidate], honest: np.ndarray, sim: np.ndarray) -> list[LBDisagreement]:
    scored = [i for i, c in enumerate(candidates) if c.public_score is not None]
    out = []
    for x, i in enumerate(scored):
        for j in scored[x + 1 :]:
            pub = candidates[i].public_score - candidates[j].public_score
            hon = honest[i] - honest[j]
            if pub * hon < 0:  # strictly opposite orders; a tie on either side is no disagreement
                p_, o_ = (i, j) if pub > 0 else (j, i)
                out.append(
                    LBDisagreement(
                        public_prefers=candidates[p_].name, oof_prefers=candidates[o_].name,
                        public_gap=abs(float(pub)), honest_gap=abs(float(hon)),
                        p_oof_right=float((sim[o_] > sim[p_]).mean()),
                    )
                )
    return out

"""Choosing the final N submissions on evidence: an honest leader, then hedges.

The simulated private leaderboard: the OOF rows (or whole groups, `--group-col`) are resampled with
replacement (`n_boot` times, the same rows for every candidate: a paired bootstrap), each
candidate's metric is computed on each resample, and each candidate's scores are shifted by its
optimism (in-sample OOF score minus its nested estimate; zero for methods that fit nothing). All of
it runs on the metric turned higher-is-better (`Metric.oriented`), so a loss is never maximised;
scores are shown in the metric's own units. So the resamples carry the real noise and
the real correlation between candidates, centred on the honest estimates: a blend whose in-sample
score was lucky (overfit weights) does not win resamples it would not win on new data.

Pick 1 is the best honest estimate. Each next pick is the candidate that maximises the expected
best-of-picks score over the resamples, E[max_j score_j]: a near copy of an earlier pick adds
nothing to that maximum, a different blend of similar quality adds the most, so it hedges.

Multi-label candidates (sigmoid tables, labels as sets) are scored with the multi-label metric of
that name, and two picks agree on the share of (row, class) decisions (p > 0.5) they share.
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
from ensemble.metrics.base import Metric
from ensemble.select.candidates import Candidate
from ensemble.task import MULTILABEL, common_task, decisions

MIN_BOOT = 10


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's evidence.

    Attributes:
        name, entry_id: which candidate (and its ledger entry, if any).
        oof: in-sample OOF score on the labels, in the metric.
        nested: the recipe's nested estimate in the same metric, or None.
        honest: nested when present, else in-sample.
        p_best: share of resamples where it scores best (ties shared).
        diff_to_leader: mean paired-bootstrap difference to the leader (honest-centred), oriented:
            positive is better than the leader whatever the metric's direction.
        diff_ci95: 2.5 and 97.5 percentiles of that difference.
        p_beats_leader: share of resamples where it beats the leader.
        public_score, private_score: leaderboard scores from the ledger.
        pick: 1-based pick order, or None when not picked.
    """

    name: str
    entry_id: int | None
    oof: float
    nested: float | None
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
    """A chosen final: `expected_best_of` is E[best over picks so far] after adding it, in the metric."""

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
            has no test predictions or they share no id), shape (n, n); multi-label: of equal
            (row, class) decisions.
        oof_agreement: pairwise share of equal OOF argmax between picks, shape (n, n); multi-label:
            of equal (row, class) decisions at 0.5.
        lb_disagreements: pairs the public leaderboard ranks against the honest OOF estimate.
        n_rows, n_boot, seed: what the simulation used.
        metric, higher_is_better: the metric every score here is in, and its direction.
        task: the candidates' task (`multiclass` or `multilabel`).
    """

    candidates: list[CandidateScore]
    picks: list[Pick]
    test_agreement: list[list[float | None]]
    oof_agreement: list[list[float]]
    lb_disagreements: list[LBDisagreement]
    n_rows: int
    n_boot: int
    seed: int
    metric: str
    higher_is_better: bool
    task: str = "multiclass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_finals(
    candidates: Sequence[Candidate],
    labels: Labels,
    *,
    n: int = 2,
    n_boot: int = 2000,
    seed: int = 42,
    metric: str | Metric = "macro_f1",
    classes: Sequence[str] | None = None,
    groups: np.ndarray | None = None,
) -> Selection:
    """Choose `n` finals among `candidates` on a simulated private leaderboard (module docstring).

    Args:
        candidates: the blends, each with an OOF table covering the labelled ids.
        labels: the training labels (with `y`), classes in the tables' class set.
        n: how many finals to choose.
        n_boot: bootstrap resamples of the OOF rows.
        seed: seeds the resamples; the same seed gives the same selection.
        metric: the leaderboard's metric (a registry name of the candidates' task, or a `Metric`
            bound to the labels).
        classes: the class order integer labels refer to (default: the tables' recorded order).
        groups: each labelled row's group (`--group-col`): whole groups are resampled.

    Raises:
        ConfigError: no candidates, `n` outside 1..len(candidates), `n_boot` too small.
        AlignmentError, ClassMismatchError: an OOF table does not cover the labels' ids or classes.
    """
    from ensemble.metrics import argmax, get_metric

    k = len(candidates)
    if k == 0:
        raise ConfigError("no candidates to select from; give recipes or record blends in the ledger")
    task = common_task([(c.oof.source, c.oof.task) for c in candidates])
    metric = get_metric(metric, task)
    if not 1 <= n <= k:
        raise ConfigError(f"--n {n} but there are {k} candidates; choose --n between 1 and {k}")
    if n_boot < MIN_BOOT:
        raise ConfigError(f"--n-boot {n_boot} is too few resamples; use at least {MIN_BOOT} (2000 is a good default)")
    if labels.y is None:
        raise ConfigError(f"{labels.source}: no label column; `ens select` scores OOF predictions against labels")
    joined = join_labels(labels, [c.oof for c in candidates], classes=classes)
    tables, y = joined.tables, joined.y
    probs = np.stack([t.probs for t in tables])  # (k, n_rows, C)
    preds = np.stack([decisions(p) if task == MULTILABEL else argmax(p) for p in probs])  # (k, n_rows) or (k, n_rows, C)
    insample = np.array([metric.score(y, p) for p in probs])
    nested = [c.nested_in(metric.name) for c in candidates]
    honest = np.array([insample[i] if nested[i] is None else nested[i] for i in range(k)], dtype=np.float64)

    boot = _bootstrap(metric, y, probs, n_boot=n_boot, seed=seed, groups=groups)  # (k, B)
    o_honest = metric.oriented(honest)
    sim = metric.oriented(np.asarray(boot, dtype=np.float64)) - metric.oriented(insample - honest)[:, None]  # oriented

    is_max = sim == sim.max(axis=0, keepdims=True)
    p_best = (is_max / is_max.sum(axis=0, keepdims=True)).mean(axis=1)
    leader = int(np.lexsort((-p_best, -o_honest))[0])  # best honest estimate; P(best) breaks ties
    diff = sim - sim[leader]  # (k, B)
    lo, hi = np.percentile(diff, [2.5, 97.5], axis=1)

    picks = _greedy_picks(sim, o_honest, leader, n)
    pick_objs = []
    prev = None
    for i, j in enumerate(picks):
        best_of = float(sim[picks[: i + 1]].max(axis=0).mean())
        shown, shown_prev = metric.oriented(best_of), None if prev is None else metric.oriented(prev)
        if prev is None:
            reason = f"best honest estimate ({'nested' if nested[j] is not None else 'in-sample'} OOF {metric.name} {honest[j]:.4f})"
        elif best_of > prev:
            reason = f"improves the expected best-of-{i + 1} {metric.name} from {shown_prev:.4f} to {shown:.4f}"
        else:
            reason = f"adds nothing to the expected best-of-{i + 1} ({shown:.4f}); the best remaining honest estimate"
        pick_objs.append(Pick(candidates[j].name, float(shown), 0.0 if prev is None else best_of - prev, reason))
        prev = best_of

    order = np.lexsort((-p_best, -o_honest))
    rank = {j: i + 1 for i, j in enumerate(picks)}
    scores = [
        CandidateScore(
            name=candidates[j].name, entry_id=candidates[j].entry_id, oof=float(insample[j]),
            nested=nested[j], honest=float(honest[j]), p_best=float(p_best[j]),
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
        lb_disagreements=_lb_disagreements(candidates, o_honest, sim, metric),
        n_rows=len(y), n_boot=n_boot, seed=seed, metric=metric.name, higher_is_better=metric.higher_is_better, task=task,
    )


def _bootstrap(
    metric: Metric, y: np.ndarray, probs: np.ndarray, *, n_boot: int, seed: int, groups: np.ndarray | None
) -> np.ndarray:
    """(k, B) paired bootstrap scores: `ensemble.bootstrap.bootstrap_metric`, whose checks take class
    indices (n,); an indicator matrix (n, C) goes through the same resample definitions (its weighted
    means of `row_losses`, else the metric on each drawn set of rows or groups)."""
    from ensemble.bootstrap import bootstrap_metric
    from ensemble.metrics.resample import Groups, mean_scores, score_each

    if y.ndim == 1:
        return bootstrap_metric(metric, y, probs, n_boot=n_boot, seed=seed, groups=groups)
    grouping = Groups.of(groups) if groups is not None else Groups.rows(len(y))
    first = metric.row_losses(y, probs[0])
    if first is not None:
        losses = np.stack([first, *(metric.row_losses(y, q) for q in probs[1:])])
        return mean_scores(losses, n_boot, seed, grouping, 1 << 22)
    return score_each(metric, y, probs, None, n_boot, seed, grouping)


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


def _lb_disagreements(
    candidates: Sequence[Candidate], honest: np.ndarray, sim: np.ndarray, metric: Metric
) -> list[LBDisagreement]:
    """Pairs ranked one way by the public scores and the other by the honest estimates (both oriented)."""
    scored = [i for i, c in enumerate(candidates) if c.public_score is not None]
    out = []
    for x, i in enumerate(scored):
        for j in scored[x + 1 :]:
            pub = metric.oriented(candidates[i].public_score - candidates[j].public_score)
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

"""Group resampling for metric bootstraps: the draws, the rows they bring, and the weighted sums
that score a resample without copying rows. `ensemble.bootstrap` defines the resamples and picks
the path; this module only carries them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ensemble.errors import MetricError
from ensemble.metrics.base import Metric

__all__ = ["Groups", "group_type_counts", "histograms", "mean_scores", "score_each"]


@dataclass(frozen=True)
class Groups:
    """Rows by group: each row's group (n,) in 0..G-1, group sizes (G,), rows sorted by group and starts."""

    code: np.ndarray
    size: np.ndarray
    order: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, groups: np.ndarray) -> Groups:
        try:
            code = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
        except TypeError:
            raise MetricError(
                "groups mix values that cannot be compared (e.g. strings and None); give one group id per row, "
                "all strings or all integers"
            ) from None
        size = np.bincount(code)
        return cls(code, size, np.argsort(code, kind="stable"), np.cumsum(size) - size)

    @classmethod
    def rows(cls, n: int) -> Groups:
        every = np.arange(n)
        return cls(every, np.ones(n, dtype=np.int64), every, every)

    def draw(self, rng: np.random.Generator, b: int) -> np.ndarray:
        """The next b resamples' drawn groups, int64 (b, G)."""
        g = len(self.size)
        return np.stack([rng.integers(0, g, size=g) for _ in range(b)])

    def counts(self, drawn: np.ndarray) -> np.ndarray:
        """How often each group is drawn per resample, int64 (b, G)."""
        b, g = drawn.shape
        return np.bincount((drawn + g * np.arange(b)[:, None]).ravel(), minlength=b * g).reshape(b, g)

    def members(self, drawn: np.ndarray) -> np.ndarray:
        """The rows of the drawn groups (G,): drawn order, each group's rows in row order."""
        sizes = self.size[drawn]
        ends = np.cumsum(sizes)
        return self.order[np.repeat(self.start[drawn] - (ends - sizes), sizes) + np.arange(ends[-1] if len(ends) else 0)]


def group_type_counts(
    groups: Groups, inv: np.ndarray, u: int, n_boot: int, seed: int, chunk: int
) -> Iterator[np.ndarray]:
    """Type counts (b, U) of group resamples, in chunks: the drawn groups' rows, counted by type."""
    pair, count = np.unique(groups.code * u + inv, return_counts=True)  # (group, type) cells and their rows
    group_of, type_of = np.divmod(pair, u)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk // max(len(pair), len(groups.size)))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        times = groups.counts(groups.draw(rng, b))[:, group_of] * count  # (b, cells)
        yield histograms(np.broadcast_to(type_of, times.shape), u, times)


def histograms(cells: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Histogram of each row of `cells` (b, m) over 0..width-1, optionally weighted: int64 (b, width)."""
    b = len(cells)
    flat = (cells + width * np.arange(b)[:, None]).ravel()
    hist = np.bincount(flat, weights=None if weights is None else weights.ravel(), minlength=b * width)
    return hist.astype(np.int64, copy=False).reshape(b, width)


def mean_scores(losses: np.ndarray, n_boot: int, seed: int, groups: Groups, chunk: int) -> np.ndarray:
    """(k, n_boot) weighted means of per-row values (k, n): each group weighted by how often it is drawn."""
    sums = np.stack([np.bincount(groups.code, weights=row, minlength=len(groups.size)) for row in losses])  # (k, G)
    rng = np.random.default_rng(seed)
    out = np.empty((len(losses), n_boot))
    per_chunk = max(1, chunk // len(groups.size))
    for start in range(0, n_boot, per_chunk):
        times = groups.counts(groups.draw(rng, min(per_chunk, n_boot - start))).astype(np.float64)  # (b, G)
        out[:, start : start + len(times)] = (times @ sums.T).T / (times @ groups.size)
    return out


def score_each(
    metric: Metric, y: np.ndarray, probs: np.ndarray, index: np.ndarray | None, n_boot: int, seed: int, groups: Groups
) -> np.ndarray:
    """(k, n_boot) scores of `metric.score` on each materialised resample."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(probs), n_boot))
    for b in range(n_boot):
        rows = groups.members(groups.draw(rng, 1)[0])
        at = rows if index is None else index[rows]
        for q, p in enumerate(probs):
            out[q, b] = metric.score(y[rows], p[rows], at)
    return out

"""How alike models' OOF predictions are: the diversity that tells which models are worth blending."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# elements per model processed at once when correlating: bounds the float64 working copy to ~64 MB / model
_CHUNK = 1 << 20  # elements per model per block: 10 models stay ~160 MB of float64 temporaries


def prob_correlation(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Pearson correlation between models' flattened probabilities.

    Args:
        probs: k arrays of shape (n, C), rows aligned.

    Returns:
        float64 matrix of shape (k, k), 1 on the diagonal; equals `np.corrcoef` of the flattened arrays.
    """
    k = len(probs)
    flat = [np.asarray(p).ravel() for p in probs]
    m = flat[0].size
    means = np.array([f.mean(dtype=np.float64) for f in flat])
    gram = np.zeros((k, k))
    for lo in range(0, m, _CHUNK):  # float64 sums in chunks: float32 products would lose digits
        block = np.stack([f[lo : lo + _CHUNK] for f in flat]).astype(np.float64)
        block -= means[:, None]
        gram += block @ block.T
    sd = np.sqrt(np.diag(gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = gram / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = 0.0  # a constant model correlates with nothing
    np.fill_diagonal(corr, 1.0)
    return corr


def argmax_agreement(preds: np.ndarray) -> np.ndarray:
    """Share of rows on which two models predict the same class.

    Args:
        preds: int predicted labels of shape (k, n).

    Returns:
        float64 matrix of shape (k, k), symmetric, 1 on the diagonal.
    """
    k = len(preds)
    out = np.ones((k, k))
    for i in range(k):
        out[i, i + 1 :] = (preds[i + 1 :] == preds[i]).mean(axis=1)
        out[i + 1 :, i] = out[i, i + 1 :]
    return out

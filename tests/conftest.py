"""Shared fixtures: small random prediction tables and labels written to tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Dirichlet rows: valid probabilities of shape (n, c), float32."""
    return rng.dirichlet(np.ones(c), size=n).astype(np.float32)


def write_csv_table(path: Path, ids, classes, probs) -> Path:
    """Write a prediction table by hand (pandas), independent of ens's writer."""
    df = pd.DataFrame(np.asarray(probs, dtype=np.float64), columns=list(classes))
    df.insert(0, "id", list(ids))
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_ledger(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that record submissions by default never touch the repo's own .ens/ledger.db."""
    monkeypatch.setenv("ENS_LEDGER", str(tmp_path_factory.mktemp("ledger") / "ledger.db"))

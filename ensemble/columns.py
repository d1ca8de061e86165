"""Column names of a labels / data CSV, and the table file formats: light modules the CLI reads at start-up."""

from __future__ import annotations

from dataclasses import dataclass

# Table file formats by name: the suffix each is written with (`ens predict --format`).
TABLE_FORMATS = {"csv": ".csv", "parquet": ".parquet"}


@dataclass(frozen=True)
class Columns:
    """Column names of a labels / data CSV (`--id-col`, `--path-col`, `--label-col`, `--fold-col`), and
    what joins several classes in one label cell of a multi-label CSV (`--label-sep`)."""

    id: str = "id"
    path: str = "path"
    label: str = "label"
    fold: str = "fold"
    label_sep: str = "|"

"""Start-up and table I/O as a user meets them: the real `ens` commands as subprocesses, and tables
of --rows x --classes read and written by ens beside pyarrow and pandas, in one run.

Printed: `ens --help` wall (best of --repeat), `ens check` on the written table (wall and peak RSS
from /usr/bin/time -v, else getrusage of the children), then per operation the seconds of ens,
pyarrow.csv and pandas with the ratio ens / fastest peer, CSV and Parquet. The ens read includes every
check (ids, classes, probabilities); the peers only parse. Peak RSS of an `ens check` on the table
is compared with the table's float32 size.

Usage:

    .venv/bin/python benchmarks/bench_cli.py                  # 1,000,000 x 18
    .venv/bin/python benchmarks/bench_cli.py --rows 20000     # a quick run
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ENS = [sys.executable, "-m", "ensemble"]


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run_command(argv: list[str]) -> tuple[float, float | None]:
    """(wall seconds, peak RSS in MB or None) of a subprocess, via /usr/bin/time -v when there."""
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    cmd = [timer, "-v", *argv] if timer else argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{r.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    if m:
        return wall, int(m.group(1)) / 1024
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far: a bound
    return wall, (after / 1024 if after > before else None)


def make_table(rows: int, classes: int, seed: int = 0):
    from ensemble import make_table as mk

    rng = np.random.default_rng(seed)
    probs = rng.random((rows, classes), dtype=np.float32) + 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    ids = np.array([f"{i:08d}" for i in range(rows)], dtype=object)
    return mk(ids, [f"class_{j}" for j in range(classes)], probs)


def peers(table, d: Path) -> dict[str, dict[str, Callable[[], object]]]:
    """op -> peer name -> call, on the same data (`id` a string, float32 class columns)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    arrow = pa.table({"id": pa.array(table.ids, pa.string()),
                      **{c: pa.array(np.ascontiguousarray(table.probs[:, j])) for j, c in enumerate(table.classes)}})
    frame = arrow.to_pandas()
    types = {"id": pa.string(), **{c: pa.float32() for c in table.classes}}
    csv_path, pq_path = d / "oof.csv", d / "pq" / "oof.parquet"  # the files ens wrote
    return {
        "csv write": {
            "pyarrow": lambda: pacsv.write_csv(arrow, d / "pa.csv"),
            "pandas": lambda: frame.to_csv(d / "pd.csv", index=False, float_format="%.9g"),
        },
        "csv read": {
            "pyarrow": lambda: pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(column_types=types)),
            "pandas": lambda: pd.read_csv(csv_path, dtype={"id": str}),
        },
        "parquet write": {
            "pyarrow": lambda: pq.write_table(arrow, d / "pa.parquet"),
            "pandas": lambda: frame.to_parquet(d / "pd.parquet", index=False),
        },
        "parquet read": {
            "pyarrow": lambda: pq.read_table(pq_path),
            "pandas": lambda: pd.read_parquet(pq_path),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for every timing")
    ap.add_argument("--skip-pandas-write", action="store_true", help="pandas.to_csv takes a minute at 1M rows")
    args = ap.parse_args()

    from ensemble import read_table, write_table

    helps = [run_command([*ENS, "--help"])[0] for _ in range(args.repeat)]
    print(f"ens --help: {min(helps):.3f} s (best of {args.repeat})")

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        table = make_table(args.rows, args.classes)
        mb = table.probs.nbytes / 2**20
        print(f"table: {args.rows} x {args.classes}, float32 probabilities {mb:.0f} MB")
        ens_ops = {
            "csv write": lambda: write_table(table, d / "oof.csv", force=True),
            "csv read": lambda: read_table(d / "oof.csv"),
            "parquet write": lambda: write_table(table, d / "pq" / "oof.parquet", force=True),
            "parquet read": lambda: read_table(d / "pq" / "oof.parquet"),
        }
        write_table(table, d / "oof.csv")
        write_table(table, d / "pq" / "oof.parquet")
        others = peers(table, d)
        print(f"{'operation':<14} {'ens':>8} {'pyarrow':>8} {'pandas':>8}  ens / fastest peer")
        for op, ens_call in ens_ops.items():
            ours = best_of(args.repeat, ens_call)
            times = {}
            for name, call in others[op].items():
                if name == "pandas" and op == "csv write" and args.skip_pandas_write:
                    continue
                times[name] = best_of(1 if name == "pandas" and op == "csv write" else args.repeat, call)
            fastest = min(times.values())
            cells = " ".join(f"{times.get(n, float('nan')):>8.3f}" for n in ("pyarrow", "pandas"))
            print(f"{op:<14} {ours:>8.3f} {cells}  {ours / fastest:.2f}x")
        size = (d / "oof.csv").stat().st_size / 2**20
        print(f"csv file {size:.0f} MB, parquet file {(d / 'pq' / 'oof.parquet').stat().st_size / 2**20:.0f} MB")
        for what in ("oof.csv", "pq/oof.parquet"):
            wall, rss = run_command([*ENS, "check", str(d / what)])
            base, _ = run_command([sys.executable, "-c", "import ensemble.cli, numpy, pandas, pyarrow"])
            rss_text = f"peak RSS {rss:.0f} MB = {rss / mb:.1f}x the float32 probabilities" if rss else "peak RSS n/a"
            print(f"ens check {what}: {wall:.2f} s (interpreter + imports alone {base:.2f} s), {rss_text}")


if __name__ == "__main__":
    main()

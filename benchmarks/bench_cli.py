"""Start-up and table I/O as a user meets them: the real `ens` commands as subprocesses, and tables
of --rows x --classes read and written by ens beside pyarrow and pandas, in one run.

Printed: `ens --help` wall (best of --repeat), `ens check` on the written table (wall and peak RSS
from /usr/bin/time -v, else getrusage of the children), then per operation the seconds of ens,
pyarrow.csv and pandas with the ratio ens / fastest peer, CSV and Parquet. The ens read includes every
check (ids, classes, probabilities); the peers only parse. Peak RSS of an `ens check` on the table
is compared with the table's float32 size.

Then the synthetic blending problem (benchmarks/synthetic.py, --models x --blend-rows x 18, written
once as prediction folders and a labels CSV): `ens blend --method weighted` (nested estimates on)
cold (an empty NUMBA_CACHE_DIR: every kernel compiles) and warm, beside `caruana_numpy.py` (a plain
numpy Caruana script on the same CSVs), and `ens oof-report` cold and warm, with the ratios.

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


def write_problem(d: Path, n_models: int, n_rows: int, n_classes: int = 18) -> tuple[list[Path], Path]:
    """The synthetic problem as prediction folders (oof.csv, test.csv of n_rows // 4) and labels.csv."""
    import pandas as pd
    from synthetic import make_problem

    from ensemble import make_table as mk
    from ensemble import write_table

    p = make_problem(n_models, n_rows, n_classes)
    classes = [f"class_{j}" for j in range(n_classes)]
    ids = np.array([f"{i:07d}" for i in range(n_rows)], dtype=object)
    test_ids = np.array([f"t{i:07d}" for i in range(n_rows // 4)], dtype=object)
    rng = np.random.default_rng(1)
    dirs = []
    for m, name in enumerate(p.names):
        write_table(mk(ids, classes, p.probs[m]), d / name / "oof.csv")
        test = rng.dirichlet(np.ones(n_classes), len(test_ids)).astype(np.float32)
        write_table(mk(test_ids, classes, test), d / name / "test.csv")
        dirs.append(d / name)
    labels = d / "labels.csv"
    pd.DataFrame({"id": ids, "label": [classes[k] for k in p.y], "fold": p.folds}).to_csv(labels, index=False)
    return dirs, labels


def blend_commands(n_models: int, n_rows: int) -> None:
    """Cold and warm `ens blend --method weighted` and `ens oof-report` beside the numpy Caruana script."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dirs, labels = write_problem(d / "preds", n_models, n_rows)
        blend = [*ENS, "blend", *map(str, dirs), "--labels", str(labels), "--method", "weighted", "--no-ledger"]
        report = [*ENS, "oof-report", *map(str, dirs), "--labels", str(labels)]
        caruana = [sys.executable, str(Path(__file__).with_name("caruana_numpy.py")), str(labels), str(d / "caruana"), *map(str, dirs)]
        cache = d / "numba-cache"
        os.environ["NUMBA_CACHE_DIR"] = str(cache)  # the subprocesses' compile cache: empty = cold
        print(f"blend problem: {n_models} models x {n_rows} rows x 18 classes (CSV)")
        times = {}
        for what, argv in (("blend", blend), ("oof-report", report)):
            shutil.rmtree(cache, ignore_errors=True)
            for state in ("cold", "warm"):
                out = ["--out", str(d / "blends" / state)] if what == "blend" else ["--json", str(d / f"report-{state}.json")]
                times[f"{what} {state}"] = run_command([*argv, *out])[0]
        times["caruana numpy"] = run_command(caruana)[0]
        for name, t in times.items():
            print(f"  {name:<16} {t:7.2f} s")
        print(f"  blend cold / warm {times['blend cold'] / times['blend warm']:.2f}x (target <= 1.5x)")
        print(f"  oof-report cold / warm {times['oof-report cold'] / times['oof-report warm']:.2f}x")
        print(f"  blend warm / numpy Caruana {times['blend warm'] / times['caruana numpy']:.2f}x (target <= 0.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for every timing")
    ap.add_argument("--skip-pandas-write", action="store_true", help="pandas.to_csv takes a minute at 1M rows")
    ap.add_argument("--models", type=int, default=20, help="members of the blend problem")
    ap.add_argument("--blend-rows", type=int, default=20_000, help="OOF rows of the blend problem")
    ap.add_argument("--skip-tables", action="store_true", help="only start-up and the blend problem")
    args = ap.parse_args()

    from ensemble import read_table, write_table

    helps = [run_command([*ENS, "--help"])[0] for _ in range(args.repeat)]
    print(f"ens --help: {min(helps):.3f} s (best of {args.repeat})")
    blend_commands(args.models, args.blend_rows)
    if args.skip_tables:
        return

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

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

`--rss`: peak RSS (/usr/bin/time -v) of `ens oof-report` and `ens blend --method weighted` over
--rss-models tables of --rss-rows x 18, against 3x the probabilities' float32 size.
`--example`: the README's first command's job, `examples/digits/run.sh` (install excluded), wall.
`--predict`: `benchmarks/bench_predict.py --startup` (ens predict's start-up to its first batch).
The run ends with one line per target of the speed issue.

`ens --help` runs with bytecode caching on (as any install has it: this sandbox sets
PYTHONDONTWRITEBYTECODE, which recompiles every module of the package at each start); the figure
without the cache is printed beside it.

Usage:

    .venv/bin/python benchmarks/bench_cli.py                  # 1,000,000 x 18
    .venv/bin/python benchmarks/bench_cli.py --rows 20000     # a quick run
    .venv/bin/python benchmarks/bench_cli.py --rss --example --predict   # every target
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
ROOT = Path(__file__).resolve().parents[1]
TARGETS: list[str] = []  # one line per target, printed at the end


def target(name: str, value: float, limit: float, unit: str, note: str = "") -> None:
    ok = "met" if value <= limit else "NOT met"
    TARGETS.append(f"  {name:<44} {value:8.2f} {unit:<3} (target <= {limit:g} {unit}) {ok}{note}")


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run_command(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float | None]:
    """(wall seconds, peak RSS in MB or None) of a subprocess, via /usr/bin/time -v when there."""
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    cmd = [timer, "-v", *argv] if timer else argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
                if state == "cold":
                    wait_for_warmup(what)
        times["caruana numpy"] = run_command(caruana)[0]
        for name, t in times.items():
            print(f"  {name:<16} {t:7.2f} s")
        print(f"  blend cold / warm {times['blend cold'] / times['blend warm']:.2f}x (target <= 1.5x)")
        print(f"  oof-report cold / warm {times['oof-report cold'] / times['oof-report warm']:.2f}x")
        print(f"  blend warm / numpy Caruana {times['blend warm'] / times['caruana numpy']:.2f}x (target <= 0.5x)")
        target("ens blend --method weighted cold / warm", times["blend cold"] / times["blend warm"], 1.5, "x")
        target("ens blend warm / numpy Caruana script", times["blend warm"] / times["caruana numpy"], 0.5, "x")
    os.environ.pop("NUMBA_CACHE_DIR", None)


def wait_for_warmup(command: str, limit: float = 20.0) -> None:
    """Make the cache warm before the warm run: wait for the cold run's warm-up child to stamp it (the
    child may outlive the command by its last kernels, and would compete with the warm run), or,
    when none ran (no idle core then), run the warm-up here, which loads what the cold run compiled
    and stamps it. Without the stamp the warm run would start a warm-up child of its own."""
    from ensemble import _warmup

    if command not in _warmup.WARMERS:
        return
    stamp = _warmup.stamp_path(command)
    end = time.perf_counter() + limit
    while stamp is not None and not stamp.exists() and time.perf_counter() < end:
        if not _warmup_running():
            break
        time.sleep(0.1)
    if stamp is not None and not stamp.exists():
        subprocess.run([sys.executable, "-m", "ensemble._warmup", command], check=True, capture_output=True)


def _warmup_running() -> bool:
    """Whether a `python -m ensemble._warmup` process runs (Linux /proc; False elsewhere)."""
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"ensemble._warmup" in p.read_bytes():
                return True
        except OSError:  # ended meanwhile
            continue
    return False


def peak_rss(n_models: int, n_rows: int) -> None:
    """Peak RSS of `ens oof-report` and `ens blend --method weighted` over n_models tables of n_rows x 18."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        dirs, labels = write_problem(d / "preds", n_models, n_rows)
        mb = n_models * n_rows * 18 * 4 / 2**20
        print(f"peak RSS over {n_models} tables of {n_rows} x 18 (float32 probabilities {mb:.0f} MB; "
              f"written in {time.perf_counter() - t0:.0f} s)")
        for what, argv in (
            ("oof-report", [*ENS, "oof-report", *map(str, dirs), "--labels", str(labels)]),
            ("blend weighted", [*ENS, "blend", *map(str, dirs), "--labels", str(labels), "--method", "weighted",
                                "--no-ledger", "--out", str(d / "blend")]),
        ):
            wall, rss = run_command(argv)
            if rss is None:
                print(f"  {what:<16} {wall:7.1f} s, peak RSS n/a (no /usr/bin/time)")
                continue
            print(f"  {what:<16} {wall:7.1f} s, peak RSS {rss:6.0f} MB = {rss / mb:.2f}x the probabilities")
            target(f"ens {what} peak RSS / float32 probabilities", rss / mb, 3.0, "x")


def example(busy: bool = False) -> None:
    """The README's first command's job (examples/digits/run.sh) in a fresh work folder, wall; `busy`: with one
    CPU-bound process competing for the cores the whole time (a Kaggle notebook's or a shared server's lot)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        _example(busy)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def _example(busy: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work, models = Path(tmp) / "work", Path(tmp) / "models"
        models.mkdir()
        for card in (ROOT / "models").glob("digits_*.toml"):  # the cards point into examples/digits/work
            (models / card.name).write_text(card.read_text().replace("../examples/digits/work/", f"{work}/"))
        env = {**os.environ, "WORK": str(work), "MODELS": str(models)}
        t0 = time.perf_counter()
        r = subprocess.run(["bash", str(ROOT / "examples/digits/run.sh")], capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"examples/digits/run.sh failed:\n{r.stderr[-2000:]}")
    beside = ", beside one CPU-bound process" if busy else ""
    print(f"examples/digits/run.sh (fresh work folder, install excluded{beside}): {wall:.0f} s")
    target(f"README's first command's job{beside}", wall / 60, 5.0, "min")


def predict_startup() -> None:
    """`bench_predict.py --startup`: its output, and its start-up figure as a target when it prints one."""
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_predict.py")), "--startup"],
                       capture_output=True, text=True, cwd=ROOT)
    print(r.stdout.rstrip())
    m = re.search(r"torch-free\s+first batch\s+([\d.]+) s", r.stdout)
    if m:
        target("ens predict start-up (imports to first batch)", float(m.group(1)), 2.0, "s")
    else:
        TARGETS.append("  ens predict start-up: see bench_predict.py --startup above")


def help_times(repeat: int) -> None:
    """`ens --help`, median of `repeat`, with bytecode caching as installs have it (and without)."""
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run_command([*ENS, "--help"], env=cached)  # writes the package's bytecode once
    with_cache = sorted(run_command([*ENS, "--help"], env=cached)[0] for _ in range(repeat))[repeat // 2]
    without = sorted(run_command([*ENS, "--help"], env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})[0]
                     for _ in range(repeat))[repeat // 2]
    bare = sorted(run_command([sys.executable, "-c", "pass"])[0] for _ in range(repeat))[repeat // 2]
    print(f"ens --help: {with_cache:.3f} s (median of {repeat}; {without:.3f} s without bytecode caching; "
          f"the bare interpreter {bare:.3f} s)")
    target("ens --help", with_cache, 0.5, "s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for every timing")
    ap.add_argument("--skip-pandas-write", action="store_true", help="pandas.to_csv takes a minute at 1M rows")
    ap.add_argument("--models", type=int, default=20, help="members of the blend problem")
    ap.add_argument("--blend-rows", type=int, default=20_000, help="OOF rows of the blend problem")
    ap.add_argument("--skip-tables", action="store_true", help="only start-up and the blend problem")
    ap.add_argument("--rss", action="store_true", help="peak RSS of oof-report and blend over --rss-models tables")
    ap.add_argument("--rss-models", type=int, default=10)
    ap.add_argument("--rss-rows", type=int, default=1_000_000)
    ap.add_argument("--example", action="store_true", help="time examples/digits/run.sh (~3 min)")
    ap.add_argument("--busy", action="store_true", help="--example beside one CPU-bound competing process")
    ap.add_argument("--predict", action="store_true", help="ens predict start-up (bench_predict.py --startup)")
    args = ap.parse_args()

    help_times(max(args.repeat, 5))
    blend_commands(args.models, args.blend_rows)
    if not args.skip_tables:
        tables(args)
    if args.rss:
        peak_rss(args.rss_models, args.rss_rows)
    if args.predict:
        predict_startup()
    if args.example:
        example(args.busy)
    print("targets (this run):")
    print("\n".join(TARGETS))


def tables(args: argparse.Namespace) -> None:
    """Read/write of a --rows x --classes table by ens, pyarrow and pandas, and `ens check`'s RSS."""
    from ensemble import read_table, write_table

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
            target(f"{op} {args.rows} x {args.classes}: ens / fastest peer", ours / fastest, 2.0, "x")
        size = (d / "oof.csv").stat().st_size / 2**20
        print(f"csv file {size:.0f} MB, parquet file {(d / 'pq' / 'oof.parquet').stat().st_size / 2**20:.0f} MB")
        for what in ("oof.csv", "pq/oof.parquet"):
            wall, rss = run_command([*ENS, "check", str(d / what)])
            base, _ = run_command([sys.executable, "-c", "import ensemble.cli, numpy, pandas, pyarrow"])
            rss_text = f"peak RSS {rss:.0f} MB = {rss / mb:.1f}x the float32 probabilities" if rss else "peak RSS n/a"
            print(f"ens check {what}: {wall:.2f} s (interpreter + imports alone {base:.2f} s), {rss_text}")


if __name__ == "__main__":
    main()

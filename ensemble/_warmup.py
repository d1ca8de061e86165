"""Compile a command's numba kernels into numba's cache in a second process while the command starts.

A fresh install's first `ens blend` compiled ~3-4 CPU s of kernels (measured with numba's compile
events, 2-core machine) only after ~3.5 CPU s of imports and table reading that leave the other core
idle. `start(command)`, called first thing by the command, launches `python -m ensemble._warmup
<command>`: the child imports numba and compiles the command's kernels (`warm()` of the module
registered below) on tiny inputs of the real types, saying each kernel's name on its stdout once it
is in the cache. Before a kernel's first compiled call, `wait(name)` blocks until the child has
said that name, so the command loads it from the cache instead of compiling it a second time.

A stamp next to numba's cache records a finished warm-up for these kernel sources, numba and
Python, so later commands start no child. Without numba, with `ENS_NO_NUMBA=1`, when no core is idle
for it (a busy machine: there the child only competes with the command), or when the child cannot
start, nothing changes: the command compiles what it calls, as before. Results are the same
machine code either way.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

# command -> module whose `warm()` compiles its kernels, yielding each public kernel name when done
WARMERS = {"blend": "ensemble.blend._kernels"}
# the files whose kernels a warm-up compiles: a change to any of them makes the stamp stale
_SOURCES = ("_kernels.py", "blend/_kernels.py")

_lock = threading.Lock()
_child: subprocess.Popen[str] | None = None
_ready: set[str] = set()


def start(command: str) -> bool:
    """Start compiling `command`'s kernels into numba's cache in a child process, unless they are there.

    Returns:
        Whether a child was started.
    """
    global _child
    if command not in WARMERS or _child is not None or os.environ.get("ENS_NO_NUMBA") == "1":
        return False
    if importlib.util.find_spec("numba") is None:
        return False
    stamp = stamp_path(command)
    if stamp is None or stamp.exists() or not _core_to_spare():  # the stamp first: a warm command samples no load
        return False
    import subprocess  # only to start a child: ~40 ms of import a warm command does not pay

    try:
        _child = subprocess.Popen(
            [sys.executable, "-m", "ensemble._warmup", command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
    except OSError:  # no process to spare: the command compiles what it calls
        return False
    return True


def _core_to_spare() -> bool:
    """Whether a core is idle for the child beside the command: fewer tasks running right now than
    cores (the command's own counted; `ens predict`'s measure, Linux), and the last minute's load
    below the cores less half of one.

    Measured on 2 cores (bench_cli.py's blend problem, cold): quiet but for the benchmark's own
    earlier commands (load 0.6-1.0), the child made the first blend 2.4 s instead of 2.6-2.8 s; beside
    one CPU-bound process, 3.0 s either way; at load ~2.5, slower (10.7 s vs 8.9-9.7 s without it),
    its compile competing with the command's own work. The load alone lags by a minute and counts
    finished work, so the running count decides where the system tells it.
    """
    from ensemble.predict.cpu import others_running, usable_cores

    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average to read: assume busy, as compiling in the command is always correct
        return False
    if not sys.platform.startswith("linux"):  # no running count to read: the load alone decides
        return load + 1 <= cores - 0.5
    return others_running() + 1 < cores and load <= cores - 0.5


def wait(kernel: str) -> None:
    """Block until a started child has put `kernel` in the cache (or has ended); at once when none runs."""
    if _child is None or kernel in _ready:
        return
    with _lock:  # fits in threads wait for the same child
        if kernel in _ready or _child.stdout is None:
            return
        for line in _child.stdout:
            _ready.add(line.strip())
            if line.strip() == kernel:
                return
        _child.wait()  # ended (everything said, or failed): the command compiles what is missing
        _ready.add(kernel)


def stamp_path(command: str) -> Path | None:
    """Where a finished warm-up of `command` is recorded: numba's cache folder for the kernels' sources.

    numba caches in `$NUMBA_CACHE_DIR` when set, else in `__pycache__` beside the sources when it can
    write there; None when neither holds (numba then caches elsewhere, and no child is started: with
    no stamp to read, one would start at every command).
    """
    root = Path(__file__).resolve().parent
    folder = Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else root / "blend" / "__pycache__"
    if not os.access(folder if folder.exists() else folder.parent, os.W_OK):
        return None
    h = hashlib.sha256(f"{command} {sys.version} {_numba_stamp()}".encode())
    for name in _SOURCES:
        h.update((root / name).read_bytes())
    return folder / f"ens-warm-{command}-{h.hexdigest()[:16]}.stamp"


def _numba_stamp() -> str:
    # numba's install (its path and when it was written): an upgrade makes the stamp stale. Stat, not
    # importlib.metadata's version lookup, which cost a warm command ~36 ms of CPU
    spec = importlib.util.find_spec("numba")
    origin = spec.origin if spec is not None and spec.origin else ""
    return f"{origin} {os.stat(origin).st_mtime_ns if origin else 0}"


def main(command: str) -> None:
    """The child: compile `command`'s kernels, say each name on stdout, then write the stamp."""
    quiet = False
    for name in importlib.import_module(WARMERS[command]).warm():
        if not quiet:
            try:
                print(name, flush=True)
            except (BrokenPipeError, OSError):  # the command ended first: keep filling the cache
                quiet = True
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's last flush
    stamp = stamp_path(command)
    if stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()


if __name__ == "__main__":
    main(sys.argv[1])

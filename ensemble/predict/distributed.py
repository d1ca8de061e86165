"""`ens predict` past one process: ranks started by torchrun share the work list; rank 0 writes.

Run under a launcher (`torchrun --nproc_per_node N -m ensemble predict ...`, which sets `RANK`,
`WORLD_SIZE`, `LOCAL_RANK`), `predict` opens a `Session`: every rank builds the same plan, rank 0
decides which items are needed (the outputs live on its disk), `assign` splits them into balanced
shares that keep each image shard's fold models together (one decode per shard and rank), each
rank reuses or computes its share on its own device (`cuda:LOCAL_RANK`, else the CPU) and stores
its parts as usual (so a rerun with the same world size resumes per rank), and rank 0 gathers the
parts and writes the tables. Batches never straddle shards (`group._blocks`), so the tables are
byte for byte those of a single-process run with the same thread count per process (CPU kernels
may round the last bit differently with another count; torchrun sets OMP_NUM_THREADS=1).

Failures: each phase ends with `Session.agree`, where every rank reports success or its error;
one failed rank makes every rank raise `DistributedError` naming it (shown once, by rank 0), before
any table is written. A failing rank also raises a flag in the launcher's key-value store that
stops the others at their next batch. A rank that dies outright (killed, out of memory) is seen by
the others' collectives as a closed connection, and torchrun stops the rest (SIGTERM, turned into
the same clean failure); torchrun's own report names the rank that died.

Gloo carries the exchange (the probabilities are host arrays); with GPUs the group also gets an
NCCL backend for CUDA tensors (`cpu:gloo,cuda:nccl`).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from ensemble._progress import NoProgress, Progress
from ensemble.errors import ConfigError, DistributedError, EnsembleError

T = TypeVar("T")
# Ranks wait for the slowest one at each exchange; a share can take hours on a big test set.
TIMEOUT = timedelta(hours=12)
_calls = itertools.count()  # one store namespace per predict call (every rank calls in the same order)


def launcher_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from a launcher's environment; (0, 1, 0) without one."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def is_rank0() -> bool:
    """Whether this process speaks for the run (the only one that shows progress and results)."""
    return launcher_env()[0] == 0


class _Stopped(EnsembleError):
    """This rank stopped because another one failed (not the cause: never reported as it)."""


class Session:
    """This process's place in the run: rank, world size, and the exchanges between ranks.

    A single process is a session of one, where every exchange is the identity.
    """

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, store: Any = None) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self._store = store

    @classmethod
    @contextmanager
    def open(cls, device: str) -> Iterator[Session]:
        """The session of this process; joins (or reuses) the launcher's process group.

        Args:
            device: the `--device` spec (decides whether the group gets an NCCL backend).
        """
        rank, world, local_rank = launcher_env()
        if world == 1:
            yield cls()
            return
        import torch
        import torch.distributed as dist

        cuda = device.strip().lower() in ("auto", "cuda") and torch.cuda.is_available()
        if cuda and local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)  # a caller's NCCL-only group exchanges objects on it
        created = not dist.is_initialized()
        if created:
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
        try:
            store = dist.PrefixStore(f"ens/predict/{next(_calls)}", dist.distributed_c10d._get_default_store())
        except (AttributeError, ValueError):  # private helper gone: no early stop or global progress
            store = None
        session = cls(dist.get_rank(), dist.get_world_size(), local_rank, store)
        try:
            previous = signal.signal(signal.SIGTERM, session._on_sigterm)
        except ValueError:  # not the main thread: the launcher's SIGTERM ends the process as usual
            previous = None
        done = False
        try:
            yield session
            done = True
        finally:
            if created:
                if done:  # leave together: a rank tearing gloo down while a peer still talks to it can abort
                    dist.barrier()  # ("terminate called without an active exception", seen on resumed runs)
                dist.destroy_process_group()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # torchrun stops the other workers when one dies: unwind cleanly (no temporary files left)
        raise DistributedError(
            f"rank {self.rank} was stopped by the launcher (SIGTERM), usually because another rank died; "
            "the launcher's report names it", silent=self.rank != 0,
        )

    def device(self, spec: str) -> str:
        """This rank's device spec: `auto`/`cuda` -> `cuda:LOCAL_RANK` (when a GPU is usable).

        Raises:
            ConfigError: one fixed `cuda:N` for several ranks (they would share one GPU).
        """
        s = spec.strip().lower()
        if self.world == 1 or s == "cpu":
            return spec
        if s.startswith("cuda:"):
            raise ConfigError(f"--device {spec} under a launcher would put all {self.world} ranks on one GPU; "
                              "pass --device cuda (each rank takes cuda:LOCAL_RANK) or --device cpu")
        import torch

        if s == "auto" and not torch.cuda.is_available():
            return "cpu"
        if torch.cuda.is_available() and self.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"rank {self.rank} has local rank {self.local_rank} but this machine shows {torch.cuda.device_count()} GPU(s); "
                f"start at most {torch.cuda.device_count()} processes per machine (--nproc_per_node) or pass --device cpu"
            )
        return f"cuda:{self.local_rank}"

    def agree(self, phase: str, fn: Callable[[], T]) -> T:
        """Run `fn` on every rank, then make every rank fail if any did.

        Raises:
            DistributedError: some rank raised (its message, naming it; silent off rank 0).
        """
        if self.world == 1:
            return fn()
        error, value, crash = None, None, None
        try:
            value = fn()
        except DistributedError:  # stopped by the launcher or a dead peer: no one is left to tell
            raise
        except EnsembleError as e:
            error = e
        except Exception as e:  # a bug on this rank: tell the others, then show its traceback here
            error, crash = e, e
        if error is not None and not isinstance(error, _Stopped):
            self._flag(f"rank {self.rank} failed while {phase}")
        reports = self._all_gather(None if error is None else (isinstance(error, _Stopped), str(error)), phase)
        if crash is not None:
            raise crash
        failed = [(r, rep[1]) for r, rep in enumerate(reports) if rep and not rep[0]]
        failed = failed or [(r, rep[1]) for r, rep in enumerate(reports) if rep]  # only stopped ranks: say so
        if failed:
            raise DistributedError(_failure_line(failed, phase), silent=self.rank != 0)
        return value  # type: ignore[return-value]

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        self._collective(lambda: dist.broadcast_object_list(box, src=0), "sharing the plan")
        return box[0]

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order, on rank 0; None elsewhere."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.rank == 0 else None
        self._collective(lambda: dist.gather_object(obj, out, dst=0), "gathering the parts")
        return out

    def progress(self, inner: Progress | None, total: int, share: int) -> Progress:
        """The progress hook of this rank's share: rank 0 shows every rank's images; others none.

        Args:
            inner: the caller's hook. total: rows x fold models of the whole run. share: this rank's.
        """
        if self.world == 1:
            return inner or NoProgress()
        return _SharedProgress(self, inner if self.rank == 0 else None, total, share)

    def _all_gather(self, obj: Any, phase: str) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        self._collective(lambda: dist.all_gather_object(out, obj), phase)
        return out

    def _collective(self, op: Callable[[], Any], phase: str) -> None:
        try:
            op()
        except RuntimeError as e:  # DistBackendError: a peer's connection closed (it died)
            text = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip())  # gloo prefixes its source location
            first = text.splitlines()[0] if text else type(e).__name__
            raise DistributedError(
                f"rank {self.rank}: another rank stopped while {phase} ({first[:160]}); the launcher's report "
                "names the rank that died, fix its cause and rerun (finished parts are reused)",
                silent=self.rank != 0,
            ) from None

    def _flag(self, why: str) -> None:
        if self._store is not None:
            try:
                self._store.set("failed", why)
            except RuntimeError:
                pass

    def check_peers(self) -> None:
        """Raise `_Stopped` when another rank has failed (at most one store query a second)."""
        if self._store is None:
            return
        now = time.monotonic()
        if now - getattr(self, "_checked", 0.0) < 1.0:
            return
        self._checked = now
        if self._store.check(["failed"]):
            raise _Stopped(f"rank {self.rank} stopped: {self._store.get('failed').decode()}")

    def count(self, key: str, n: int) -> int:
        """Add `n` to a counter shared by the ranks; returns its new value."""
        return int(self._store.add(key, n)) if self._store is not None else 0


class _SharedProgress:
    """Counts every rank's images in the store; rank 0's bar shows the total of all ranks."""

    def __init__(self, session: Session, inner: Progress | None, total: int, share: int) -> None:
        self.session, self.inner, self.total, self.share, self.shown = session, inner, total, share, 0

    def start(self, description: str, total: int | None) -> None:
        if self.inner is not None:
            self.inner.start(f"{description} ({self.session.world} ranks)", self.total)
        self.advance(self.share - (total or 0))  # this rank's rows reused from stored parts: done at once

    def advance(self, n: int = 1) -> None:
        self.session.check_peers()
        done = self.session.count("done", n)
        if self.inner is not None and done > self.shown:
            self.inner.advance(done - self.shown)
            self.shown = done

    def stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()


def _failure_line(failed: list[tuple[int, str]], phase: str) -> str:
    messages = {msg for _, msg in failed}
    if len(messages) == 1 and len(failed) > 1:  # the same error everywhere (e.g. a bad option)
        return failed[0][1]
    rank, msg = failed[0]
    more = f" (and ranks {', '.join(str(r) for r, _ in failed[1:])})" if len(failed) > 1 else ""
    return f"rank {rank} failed while {phase}{more}: {msg}"


def assign(groups: Sequence[Sequence[int]], costs: Sequence[int], world: int) -> list[list[int]]:
    """Split items into `world` balanced shares, keeping items that share a decode together.

    Args:
        groups: items grouped by the rows they read (an image shard: every fold model of it).
        costs: rows x forwards of each group, same order.
        world: the number of ranks.

    Returns:
        Each rank's items, ascending. A group is split across ranks only when there are fewer
        groups than ranks (a small test set on many GPUs); otherwise whole groups go to the least
        loaded rank, largest first.
    """
    units: list[tuple[int, list[int]]] = []
    pieces = [1] * len(groups)
    while groups and sum(pieces) < world:  # too few shards for the ranks: cut the largest per-piece groups
        g = max(range(len(groups)), key=lambda k: (len(groups[k]) / pieces[k], -k))
        if len(groups[g]) <= pieces[g]:
            break  # every group is down to single items
        pieces[g] += 1
    for items, cost, n in zip(groups, costs, pieces):
        for j in range(n):
            piece = list(items[j::n])
            units.append((cost * len(piece) // max(1, len(items)), piece))
    load, shares = [0] * world, [[] for _ in range(world)]
    for cost, piece in sorted(units, key=lambda u: (-u[0], u[1][0])):
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += cost
        shares[r].extend(piece)
    return [sorted(s) for s in shares]

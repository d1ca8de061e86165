"""`_csv_table.prefetch`: tables parsed ahead in a thread read exactly as tables parsed when read, and
a file that changed, went bad or does not match is parsed again, with the usual one-line error."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from ensemble import _csv_table, read_table
from ensemble.errors import TableError
from ensemble.tables import read_tables
from tests.conftest import random_probs, write_csv_table


@pytest.fixture
def parses(monkeypatch):
    """The threads each `_read_csv` ran in, in order."""
    seen: list[str] = []
    real = _csv_table._read_csv

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(_csv_table, "_read_csv", spy)
    monkeypatch.setattr(_csv_table, "_PREFETCHED", {})
    return seen


def _folders(tmp_path, rng, n=3):
    dirs = []
    for m in range(n):
        d = tmp_path / f"m{m}"
        write_csv_table(d / "oof.csv", [f"r{i}" for i in range(50)], ["a", "b", "c"], random_probs(rng, 50, 3))
        write_csv_table(d / "test.csv", [f"t{i}" for i in range(20)], ["a", "b", "c"], random_probs(rng, 20, 3))
        dirs.append(d)
    return dirs


def test_prefetched_tables_read_as_pandas_reads_them_and_are_not_parsed_twice(tmp_path, rng, parses):
    dirs = _folders(tmp_path, rng)
    _csv_table.prefetch_folders(dirs, ("oof", "test"))
    oofs = read_tables(dirs, kind="oof", stack=True)
    tests = read_tables(dirs, kind="test")
    assert parses == ["ens-prefetch"] * 6  # every file parsed once, by the prefetch thread
    for d, o, t in zip(dirs, oofs, tests):
        for table, path in ((o, d / "oof.csv"), (t, d / "test.csv")):
            ref = pd.read_csv(path, dtype={"id": str})
            assert list(table.ids) == list(ref["id"]) and table.classes == ["a", "b", "c"]
            np.testing.assert_array_equal(table.probs, ref[["a", "b", "c"]].to_numpy(np.float32))
    assert not _csv_table._PREFETCHED  # nothing left waiting


def test_a_file_rewritten_after_the_prefetch_is_read_as_it_is_now(tmp_path, rng, parses):
    (d,) = _folders(tmp_path, rng, 1)
    _csv_table.prefetch_folders([d], ("oof",))
    _csv_table._PREFETCHED[next(iter(_csv_table._PREFETCHED))].result()  # the early parse is done
    new = random_probs(rng, 7, 3)
    write_csv_table(d / "oof.csv", [f"x{i}" for i in range(7)], ["a", "b", "c"], new)
    t = read_table(d, kind="oof")
    assert list(t.ids) == [f"x{i}" for i in range(7)]
    np.testing.assert_allclose(t.probs, new, rtol=1e-6)
    assert parses[-1] == threading.main_thread().name


def test_a_bad_file_gives_the_same_one_line_error_with_or_without_the_prefetch(tmp_path, rng, parses):
    (d,) = _folders(tmp_path, rng, 1)
    text = (d / "oof.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",oops"
    (d / "oof.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(TableError) as plain:
        read_table(d, kind="oof")
    _csv_table.prefetch_folders([d], ("oof",))
    with pytest.raises(TableError) as early:
        read_table(d, kind="oof")
    assert str(early.value) == str(plain.value) and "'c' holds a non-numeric value (row 3: 'oops')" in str(plain.value)


def test_files_over_the_budget_are_left_to_the_reader(tmp_path, rng, parses, monkeypatch):
    dirs = _folders(tmp_path, rng)
    total = sum((d / "oof.csv").stat().st_size for d in dirs)
    monkeypatch.setattr(_csv_table, "PREFETCH_BYTES", total)  # just enough: all three are parsed ahead
    _csv_table.prefetch_folders(dirs, ("oof",))
    assert len(_csv_table._PREFETCHED) == 3
    for future in list(_csv_table._PREFETCHED.values()):
        future.result()
    _csv_table.forget_prefetched()
    monkeypatch.setattr(_csv_table, "PREFETCH_BYTES", total - 1)  # one byte short: none is
    _csv_table.prefetch_folders(dirs, ("oof",))
    assert not _csv_table._PREFETCHED
    read_tables(dirs, kind="oof")
    assert parses == ["ens-prefetch"] * 3 + [threading.main_thread().name] * 3


def test_a_rewrite_that_keeps_size_and_modification_time_is_parsed_and_hashed_again(tmp_path, rng, parses):
    import hashlib
    import os

    (d,) = _folders(tmp_path, rng, 1)
    p = d / "oof.csv"
    st = p.stat()
    t = read_table(d, kind="oof")
    first_hash = t.file_sha256()
    _csv_table.prefetch_folders([d], ("oof",))
    lines = p.read_text().splitlines()
    lines[1], lines[2] = lines[2].split(",", 1)[0] + "," + lines[1].split(",", 1)[1], lines[1].split(",", 1)[0] + "," + lines[2].split(",", 1)[1]
    p.write_text("\n".join(lines) + "\n")  # rows 1 and 2 swap probabilities: the same bytes in all
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time (cp -p, rsync -a)
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    again = read_table(d, kind="oof")
    ref = pd.read_csv(p, dtype={"id": str})
    np.testing.assert_array_equal(again.probs, ref[["a", "b", "c"]].to_numpy(np.float32))
    assert t.file_sha256() == hashlib.sha256(p.read_bytes()).hexdigest() != first_hash


def test_no_thread_to_spare_means_no_prefetch_and_no_background_hash(tmp_path, rng, parses, monkeypatch):
    from ensemble import tables

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    dirs = _folders(tmp_path, rng, 2)
    _csv_table.prefetch_folders(dirs, ("oof",))
    tables.hash_in_background([d / "oof.csv" for d in dirs])
    assert not _csv_table._PREFETCHED and not tables._HASHING
    t = read_table(dirs[0], kind="oof")  # parsed and hashed here, at once (nothing waits for a thread)
    assert parses == [threading.main_thread().name] and len(t.file_sha256()) == 64


def test_the_cli_forgets_early_parses_a_failed_command_did_not_read(tmp_path, rng):
    from typer.testing import CliRunner

    from ensemble.cli import app

    dirs = _folders(tmp_path, rng, 2)
    r = CliRunner().invoke(app, ["blend", *map(str, dirs), "--out", str(tmp_path / "b"), "--recipe", "r.json",
                                 "--method", "soft"])
    assert r.exit_code == 2
    assert not _csv_table._PREFETCHED

"""The ledger's SQLite file: opening, recognising ours, the schema, and write transactions.

Safety rules:
- A file that SQLite cannot read (not a database, corrupt) or an SQLite database of another
  application is refused with a `LedgerError` and never written to: we only ever read it.
- Our databases carry `PRAGMA application_id = APP_ID` and a `meta` table with the schema version.
- WAL journal + a busy timeout + `BEGIN IMMEDIATE` for every write, so concurrent `ens` processes
  queue instead of failing, and a read never sees half a write.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ensemble._io import check_writable, output_error
from ensemble.errors import LedgerError

DEFAULT_LEDGER = Path(".ens") / "ledger.db"
APP_ID = 0x454E534C  # "ENSL"
APP_NAME = "ens-ledger"
SCHEMA_VERSION = 2  # 2: scores name their metric (oof_score, nested_score, metric, higher_is_better)
BUSY_TIMEOUT_S = 60.0

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE submissions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        file_sha256 TEXT NOT NULL,
        pred_sha256 TEXT NOT NULL,
        ids_sha256 TEXT NOT NULL,
        n_rows INTEGER NOT NULL,
        labels_as TEXT NOT NULL,
        classes TEXT,
        vocab TEXT NOT NULL,
        codes BLOB NOT NULL,
        recipe_path TEXT,
        recipe_sha256 TEXT,
        method TEXT,
        members TEXT,
        metric TEXT,
        higher_is_better INTEGER,
        oof_score REAL,
        nested_score REAL,
        ci_lo REAL,
        ci_hi REAL,
        created TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        public_score REAL,
        private_score REAL,
        scored TEXT
    )""",
    "CREATE TABLE idsets (ids_sha256 TEXT PRIMARY KEY, ids BLOB NOT NULL)",
    "CREATE INDEX submissions_pred ON submissions (pred_sha256)",
    "CREATE INDEX submissions_ids ON submissions (ids_sha256)",
)


def ledger_path(ledger: str | os.PathLike | None) -> Path:
    """The ledger file: `ledger`, else $ENS_LEDGER, else `.ens/ledger.db` under the current directory."""
    if ledger is not None:
        return Path(ledger)
    return Path(os.environ.get("ENS_LEDGER") or DEFAULT_LEDGER)


@contextmanager
def connect(ledger: str | os.PathLike | None, *, create: bool) -> Iterator[sqlite3.Connection]:
    """Open the ledger, checking that it is ours; with `create`, an absent ledger is created at the
    block's first statement, so a block that fails before it (or writes nothing) leaves no file.

    Any SQLite error raised inside the block (corruption found mid-read, a lock held past the
    timeout) becomes a `LedgerError` naming the file.

    Raises:
        LedgerError: no ledger (and not `create`), not a database, another application's database,
            a newer schema, or a corrupt file.
        OutputError: `create` and the ledger's folder cannot hold a new file.
    """
    p = ledger_path(ledger)
    if p.is_dir():
        raise LedgerError(f"{p}: is a folder, not a ledger file; give --ledger a file path such as .ens/ledger.db")
    con: sqlite3.Connection | _Deferred
    if p.exists():
        con = _open(p, create=create)
    elif create:
        check_writable([p], force=True)  # a folder that cannot hold it fails now, not after the work
        con = _Deferred(p)
    else:
        raise LedgerError(
            f"{p}: no ledger here; record a submission first (`ens submissions add FILE`) or give --ledger PATH"
        )
    try:
        yield con  # type: ignore[misc]  # a _Deferred stands in for the connection it opens
    except sqlite3.DatabaseError as e:
        raise _unreadable(p, e) from None
    finally:
        con.close()


def _unreadable(p: Path, e: sqlite3.DatabaseError) -> LedgerError:
    return LedgerError(
        f"{p}: the ledger is unreadable ({e}); it was left as is — restore it from a copy or use another --ledger"
    )


def _open(p: Path, *, create: bool) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(p, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as e:
        raise LedgerError(f"{p}: cannot open the ledger ({e}); check the path and its permissions") from None
    con.row_factory = sqlite3.Row
    try:
        _check_or_init(con, p, create=create)
    except sqlite3.DatabaseError as e:
        con.close()
        raise _unreadable(p, e) from None
    except BaseException:
        con.close()
        raise
    return con


class _Deferred:
    """A ledger not on disk yet: the file is created (or found, if another process made it
    meanwhile) at the first use of the connection."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._con: sqlite3.Connection | None = None

    def __getattr__(self, name: str) -> Any:
        if self._con is None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise output_error(e, self._path) from None
            self._con = _open(self._path, create=True)
        return getattr(self._con, name)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


@contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All-or-nothing write; `BEGIN IMMEDIATE` takes the write lock up front so readers of the
    block's own queries see exactly what it then writes on (no lost update between processes)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _state(con: sqlite3.Connection) -> tuple[set[str], int]:
    """The file's tables and application id, read in one transaction: as two autocommit reads they
    could straddle another process's creation of the ledger (no tables, yet our id: "not an ens
    ledger")."""
    own = not con.in_transaction
    if own:
        con.execute("BEGIN")
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (app_id,) = con.execute("PRAGMA application_id").fetchone()
    finally:
        if own and con.in_transaction:
            con.execute("COMMIT")
    return tables, int(app_id)


def _check_or_init(con: sqlite3.Connection, p: Path, *, create: bool) -> None:
    try:
        tables, app_id = _state(con)  # reading only: SQLite refuses a foreign file before writing
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise LedgerError(
                f"{p}: not an ens ledger ({e}); it was left untouched — move it away or give another --ledger path"
            ) from None
        raise  # an SQLite file that is damaged: `connect` reports it as unreadable
    if not tables and app_id == 0:
        if not create:
            raise LedgerError(f"{p}: the ledger is empty; record a submission first with `ens submissions add FILE`")
        _init(con)
        tables, app_id = _state(con)
    if app_id != APP_ID or "meta" not in tables:
        shown = ", ".join(sorted(tables)) or "none"
        raise LedgerError(
            f"{p}: not an ens ledger (an SQLite database of another application; tables: {shown}); "
            "it was left untouched — give another --ledger path"
        )
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else -1
    if version > SCHEMA_VERSION:
        raise LedgerError(f"{p}: ledger schema {version} was written by a newer ens (this one reads {SCHEMA_VERSION}); upgrade ens")
    if version < 1:
        raise LedgerError(f"{p}: ledger has no schema version; it was left untouched — give another --ledger path")
    if version < SCHEMA_VERSION:
        _migrate(con)


# Each step takes a ledger from version k to k + 1 (the key); all run in one write transaction.
_MIGRATIONS = {
    1: (  # scores were macro-F1 under their metric's name; now they name their metric
        "ALTER TABLE submissions RENAME COLUMN oof_macro_f1 TO oof_score",
        "ALTER TABLE submissions RENAME COLUMN nested_macro_f1 TO nested_score",
        "ALTER TABLE submissions ADD COLUMN metric TEXT",
        "ALTER TABLE submissions ADD COLUMN higher_is_better INTEGER",
        "UPDATE submissions SET metric = 'macro_f1', higher_is_better = 1 WHERE recipe_sha256 IS NOT NULL",
    ),
}


def _migrate(con: sqlite3.Connection) -> None:
    """Bring an older ledger to SCHEMA_VERSION, once (another process may have done it meanwhile)."""
    with write_transaction(con):
        (version,) = con.execute("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'").fetchone()
        for v in range(int(version), SCHEMA_VERSION):
            for stmt in _MIGRATIONS[v]:
                con.execute(stmt)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _init(con: sqlite3.Connection) -> None:
    # WAL lets readers run while a writer commits; the mode is stored in the file, set once.
    _set_wal(con)
    with write_transaction(con):
        tables, _ = _state(con)  # another process may have created it while we waited for the lock
        if tables:
            return
        for stmt in _SCHEMA:
            con.execute(stmt)
        con.execute(f"PRAGMA application_id = {APP_ID}")
        con.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("app", APP_NAME), ("schema_version", str(SCHEMA_VERSION))],
        )


def _set_wal(con: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out another process doing the same.

    Two processes creating the ledger at once both run this pragma; each must upgrade its read lock
    to an exclusive one, and SQLite answers "database is locked" at once rather than call the busy
    handler (a deadlock otherwise). The failed statement has released its lock, so retrying until
    the busy timeout lets the other finish first (one in three concurrent creations failed here).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)

"""The SQLite backend of the results store: one file in WAL mode (readers and the writer do not block each
other), each write transaction begun IMMEDIATE (it takes the write lock at once, so concurrent writers queue on
the busy timeout instead of failing on a lock upgrade) and retried while the file stays busy. Commands that only
read open the file read-only (an SQLite ``mode=ro`` URI): not even its journal mode is changed."""

import os
import sqlite3
import stat
import time
from pathlib import Path

from ..errors import BlkfleetError
from ..files import absolute, work_dir

BUSY_TIMEOUT_S = 30
RETRY_FOR_S = 300


class SQLiteBackend:
    name = "sqlite"
    Error = sqlite3.Error
    ddl_values = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "now": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                  "doc_mode": "CASE WHEN json_valid(doc) THEN json_extract(doc, '$.mode') END"}

    def __init__(self, path, create, writable=True):
        """``writable`` False: the existing file is opened read-only (then ``create`` is False)."""
        if not create and not os.path.exists(path):
            raise BlkfleetError(f"{path}: no results store (add results first: blkfleet results add)",
                                code="not_found")
        if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would hang a read-only open
            raise BlkfleetError(f"{path}: not a usable results store: not a regular file")
        if create:
            work_dir(os.path.dirname(absolute(path)), "results store's directory")
        self.writable = writable
        try:
            if writable:
                self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                self.db = sqlite3.connect(Path(absolute(path)).as_uri() + "?mode=ro", uri=True,
                                          timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA foreign_keys = ON")
            try:  # kept in the file: set by the commands that may make a store, not by those that need one
                mode = self.db.execute("PRAGMA journal_mode = WAL" if create else "PRAGMA journal_mode").fetchone()[0]
                if writable and mode == "wal":
                    self.db.execute("PRAGMA synchronous = NORMAL")  # WAL keeps commits durable across a crash
            except sqlite3.OperationalError:
                pass  # a store we may not write to keeps its journal mode
        except sqlite3.DatabaseError as e:
            raise BlkfleetError(f"{path}: not a usable results store: {e}") from None

    def execute(self, sql, params=()):
        return self.db.execute(sql, params)

    def executemany(self, sql, rows):
        self.db.executemany(sql, rows)

    def has_table(self, name):
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    def empty(self):
        """Whether the database holds nothing at all (an empty file is one)."""
        return self.db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None

    def insert_new(self, sql, params):
        """Run an ``INSERT ... ON CONFLICT DO NOTHING``; the new row's id, or None when it conflicted."""
        cur = self.db.execute(sql, params)
        return cur.lastrowid if cur.rowcount == 1 else None

    def lock_schema(self):
        """Nothing to do: BEGIN IMMEDIATE already holds the only write lock."""

    @staticmethod
    def readonly(error):
        return isinstance(error, sqlite3.OperationalError) and "readonly" in str(error).replace("-", "")

    def transaction(self, work):
        """Run ``work()`` in one write transaction; retried while the database is locked by another writer."""
        deadline = time.monotonic() + RETRY_FOR_S
        pause = 0.005
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if not _busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            try:
                result = work()
                self.db.execute("COMMIT")
                return result
            except BaseException as e:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if not (isinstance(e, sqlite3.OperationalError) and _busy(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def close(self):
        self.db.close()


def _busy(error):
    text = str(error)
    return "locked" in text or "busy" in text

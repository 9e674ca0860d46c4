"""Commands that only read the results store (``results list``, ``show``, ``export``, ``baseline list``,
``regress``, ``report``) open it read-only: an empty file or another application's SQLite database given as
``--db`` is refused with one line (exit 2) and left byte for byte as it was, and so is a store they read."""

import hashlib
import os
import sqlite3

import pytest

from blkfleet.cli import main
from blkfleet.results.store import Store
from helpers.synth import fails, run_cli
from helpers.synth_results import make_doc, write_doc

READERS = [
    ["results", "list"],
    ["results", "show", "1"],
    ["results", "export", "-o", "{tmp}/export.json"],
    ["results", "baseline", "list"],
    ["regress", "--baseline", "base"],
    ["report", "-o", "{tmp}/report.html", "--results", "{doc}"],
]


def _state(directory):
    """{name: sha256} of every file in ``directory``."""
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _run(argv, db, tmp_path, capsys):
    doc = write_doc(tmp_path / "r.json", make_doc(seed=1))
    code = main([a.format(tmp=tmp_path, doc=doc) for a in argv] + ["--db", str(db)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv", READERS + [["results", "baseline", "set", "base", "--last", "1"]],
                         ids=lambda a: " ".join(a[:3]))
def test_an_empty_file_is_no_store_and_stays_empty(tmp_path, capsys, argv):
    """An empty file (a ``touch``) was given a schema by the first command that looked at it."""
    store = tmp_path / "store"
    store.mkdir()
    db = store / "empty.sqlite"
    db.touch()
    code, err = _run(argv, db, tmp_path, capsys)
    assert code == 2 and err == f"blkfleet: {db}: no results store: an empty database (add results first: " \
        "blkfleet results add)\n"
    assert _state(store) == {"empty.sqlite": hashlib.sha256(b"").hexdigest()}


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a[:3]))
def test_another_database_is_not_a_store_and_is_left_alone(tmp_path, capsys, argv):
    store = tmp_path / "store"
    store.mkdir()
    db = store / "other.sqlite"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE things (name TEXT)")
    before = _state(store)
    code, err = _run(argv, db, tmp_path, capsys)
    assert code == 2 and err == f"blkfleet: {db}: not a results store (an SQLite database without blkfleet's " \
        "tables)\n"
    assert _state(store) == before
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a[:3]))
def test_a_store_is_read_without_a_write(tmp_path, capsys, argv):
    """Not even the journal mode of a store in rollback mode (a copy made with the sqlite3 shell's .backup) is
    changed, nor the outcome of screening its runs kept."""
    db = tmp_path / "store.sqlite"
    with Store(str(db)) as store:
        for seed in range(1, 5):
            store.add(make_doc(seed=seed))
        store.set_baseline("base", last=3)
        store.db.execute("DELETE FROM meta WHERE key = 'checked_through'")
        store.db.execute("PRAGMA journal_mode = DELETE")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, err = _run(argv, db, tmp_path, capsys)
    assert code in (0, 12) and "Traceback" not in err, err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    """A read-only open of a FIFO would wait for a writer for ever."""
    os.mkfifo(tmp_path / "fifo")
    fails(run_cli("results", "list", "--db", tmp_path / "fifo", timeout=30), f"{tmp_path / 'fifo'}: not a usable "
          "results store: not a regular file")

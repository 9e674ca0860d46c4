"""The results store on both backends, SQLite (a file) and PostgreSQL (a real server started for the tests):
the same behaviour through the API and the CLI, --db or $BLKFLEET_DB, concurrent writers, migrations."""

import copy
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from blkfleet.errors import BlkfleetError
from blkfleet.results import store_sqlite
from blkfleet.results.store import Store
from blkfleet.results.store_schema import SCHEMA_VERSION
from helpers import ENGINE, ENV, REPO
from helpers.synth_results import make_doc, write_doc

WRITERS = 8
RUNS_EACH = 1000
SHARED = 50  # documents every writer adds: each must be stored once


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "results" / "blkfleet.sqlite")
    return request.getfixturevalue("postgres_db")


def blkfleet(*argv, env=None, check=True, cwd=None):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, argv)], capture_output=True, text=True,
                         env={**ENV, **(env or {})}, timeout=300, cwd=cwd)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def test_the_same_behaviour_on_both_backends(location):
    doc = make_doc(seed=1)
    with Store(location) as store:
        run_id, new = store.add(doc, tags=[("kernel", "6.1")], bundle_id="b-1", source="x.json")
        assert new and store.get(run_id).doc == doc
        assert store.add(copy.deepcopy(doc), tags=[("kernel", "6.2"), ("night", "1")]) == (run_id, False)
        assert dict(store.get(run_id).tags) == {"kernel": "6.2", "night": "1"}
        for seed in range(2, 6):
            store.add(make_doc(seed=seed, host="hostB" if seed == 5 else "hostA"))
        assert [r["run_id"] for r in store.rows(host="hostA")] == [1, 2, 3, 4]
        assert [r["run_id"] for r in store.rows(tags=[("night", "1")])] == [1]
        assert [r["device"] for r in store.rows(device="/dev/loop7")] == ["loop1"] * 5
        store.set_baseline("base", last=2, host="hostA")
        store.set_baseline("base", last=3, host="hostA")  # redefined
        assert [r["run_id"] for r in store.baseline("base")] == [2, 3, 4]
        assert store.baselines()[0]["members"][0] == {"run": 2, "device": "loop1", "host": "hostA"}
        listing = store.listing()
        assert listing[0]["tags"] == {"kernel": "6.2", "night": "1"} and listing[0]["iops"] > 0
        assert store.export_csv().count("\n") == 6
        with pytest.raises(BlkfleetError, match="no run 99"):
            store.get(99)
    with Store(location, create=False) as store:
        assert len(store.rows()) == 5


def test_the_cli_through_db_or_the_environment(location, tmp_path):
    """--db names the store; without it $BLKFLEET_DB does, for results, regress and report alike."""
    files = [write_doc(tmp_path / f"r{i}.json", make_doc(seed=i, started=f"2026-05-{i + 1:02d}T02:00:00+00:00",
                                                          iops=10000.0 if i < 5 else 8000.0)) for i in range(7)]
    work = tmp_path / "cwd"  # where the default store (results/blkfleet.sqlite) would be made
    work.mkdir()
    blkfleet("results", "add", "--db", location, *files[:3], cwd=work)
    env = {"BLKFLEET_DB": location}
    blkfleet("results", "add", *files[3:], env=env, cwd=work)
    listed = json.loads(blkfleet("results", "list", "--json", env=env, cwd=work).stdout)
    assert [r["run"] for r in listed] == [1, 2, 3, 4, 5, 6, 7]
    blkfleet("results", "baseline", "set", "nightly", "--run", 1, 2, 3, 4, 5, env=env, cwd=work)
    verdict = blkfleet("regress", "--baseline", "nightly", "--runs", 6, 7, "-q", env=env, check=False, cwd=work)
    assert verdict.returncode == 10, verdict.stderr  # 20 % fewer IOPS
    report = tmp_path / "report.html"
    blkfleet("report", "-o", report, "--baseline", "nightly", env=env, cwd=work)
    assert "REGRESSION" in report.read_text()
    assert os.listdir(work) == []  # every command used $BLKFLEET_DB, none the default file


def _writer(location, index):
    """A writer process: RUNS_EACH documents of its own, then the SHARED documents all writers add."""
    return subprocess.Popen([sys.executable, "-c", f"""
import copy, datetime, json, sys
from blkfleet.results.store import Store
from helpers.synth_results import make_doc
base = make_doc(seed=7, ios=200, timeline_s=1.0)
t0 = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
def doc(host, k):
    d = copy.deepcopy(base)
    d["host"] = host
    d["started"] = (t0 + datetime.timedelta(seconds=k)).isoformat()
    return d
out = []
with Store({location!r}) as store:
    for k in range({RUNS_EACH}):
        out.append(store.add(doc("writer{index}", k), tags=[("writer", "{index}")]))
    for k in range({SHARED}):
        out.append(store.add(doc("shared", k)))
print(json.dumps(out))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONPATH": f"{ENGINE}:{REPO / 'tests'}"})


@pytest.mark.slow
def test_concurrent_writers_lose_and_duplicate_nothing(location):
    """8 processes adding 1,000 runs each (and the same 50 runs all of them): every run stored exactly once."""
    with Store(location):
        pass  # the tables exist before the race (creating them concurrently is tested apart)
    procs = [_writer(location, i) for i in range(WRITERS)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        outputs.append(json.loads(out))
    with Store(location, create=False) as store:
        rows = store.rows()
        assert len(rows) == WRITERS * RUNS_EACH + SHARED
        assert len({r["run_id"] for r in rows}) == len(rows)
        for i, added in enumerate(outputs):
            own = added[:RUNS_EACH]
            assert all(new for _id, new in own)
            assert sorted(r["run_id"] for r in store.rows(tags=[("writer", str(i))])) == sorted(i for i, _ in own)
        shared = [added[RUNS_EACH:] for added in outputs]
        for k in range(SHARED):  # one writer stored it, the others got the same run back
            assert len({s[k][0] for s in shared}) == 1 and sum(s[k][1] for s in shared) == 1
        hosts = {}
        for r in rows:
            hosts.setdefault(r["host"], set()).add(r["started"])
        assert {h: len(s) for h, s in hosts.items()} == {**{f"writer{i}": RUNS_EACH for i in range(WRITERS)},
                                                        "shared": SHARED}


def test_a_new_store_created_by_many_at_once(location):
    """Controllers opening a store that does not exist yet create its tables once, without an error."""
    code = f"from blkfleet.results.store import Store\nwith Store({location!r}) as s: s.rows()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(6)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with Store(location, create=False) as store:
        assert store.backend.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION)


def test_a_store_of_a_later_version_is_refused(location):
    with Store(location) as store:
        store.add(make_doc(seed=1))
        store.backend.transaction(lambda: store.backend.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)))
    with pytest.raises(BlkfleetError, match=f"version {SCHEMA_VERSION + 1}, this blkfleet reads up to"):
        Store(location, create=False)


def test_sqlite_store_in_wal_mode(tmp_path):
    path = tmp_path / "db.sqlite"
    with Store(str(path)) as store:
        store.add(make_doc(seed=1))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_writer_retries_while_another_holds_the_lock(tmp_path, monkeypatch):
    """A writer that finds the file locked longer than its busy timeout waits and retries rather than failing."""
    path = tmp_path / "db.sqlite"
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_S", 0.05)
    with Store(str(path)) as store:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
        release.start()
        t0 = time.monotonic()
        try:
            run_id, new = store.add(make_doc(seed=2))
        finally:
            release.join()
        assert new and time.monotonic() - t0 >= 0.9
        assert [r["run_id"] for r in store.rows()] == [run_id]
    other.close()


def test_postgresql_without_psycopg_says_what_to_install(postgres_db):
    code = ("import sys; sys.modules['psycopg'] = None; from blkfleet.cli import main; "
            f"sys.exit(main(['results', 'list', '--db', {postgres_db!r}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "pip install 'blkfleet[postgresql]'" in run.stderr


def test_postgresql_errors_are_one_line_without_the_password(postgres_server, tmp_path):
    url = f"postgresql://blkfleet:s3cret@/nosuchdb?host={postgres_server.split('host=')[1]}"
    run = blkfleet("results", "list", "--db", url, check=False)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "s3cret" not in run.stderr and "blkfleet:***@" in run.stderr and "nosuchdb" in run.stderr
    env_run = blkfleet("regress", "--baseline", "b", env={"BLKFLEET_DB": url}, check=False)
    assert env_run.returncode == 2 and "s3cret" not in env_run.stderr


def test_a_server_gone_mid_command_is_one_line(postgres_db):
    """The connection dies while a command uses the store: one error line naming the store, no traceback."""
    import psycopg

    with pytest.raises(BlkfleetError, match="results store failed") as caught, Store(postgres_db) as store:
        store.add(make_doc(seed=1))
        with psycopg.connect(postgres_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                          "AND datname = current_database()")
        store.rows()
    assert "\n" not in str(caught.value) and postgres_db.split("?")[0] in str(caught.value)


def test_a_version_1_store_gets_each_runs_mode(location):
    """A store made before runs had a mode column (schema version 1, as blkfleet stores were before the replay
    modes) is migrated when opened, even by a command that only reads: every (run, device) row takes its
    document's mode."""
    from blkfleet.results import store_schema

    no_stall, timed = make_doc(seed=11), make_doc(seed=12)
    no_stall["mode"] = "no-stall"
    with Store(location) as store:
        for sql in store_schema.statements("DROP TABLE baseline_members; DROP TABLE baselines; DROP TABLE rejected; "
                                           "DROP TABLE tags; DROP TABLE results; DROP TABLE runs; DROP TABLE meta",
                                           {}):
            store.backend.transaction(lambda sql=sql: store.backend.execute(sql))

        def version_1():
            for sql in store_schema.statements(store_schema._V1, store.backend.ddl_values):
                store.backend.execute(sql)
            store.backend.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
            for n, doc in enumerate((no_stall, timed), 1):
                store.backend.execute(
                    "INSERT INTO runs (id, sha256, host, started, doc) VALUES (?, ?, ?, ?, ?)",
                    (n, f"{n:064x}", doc["host"], doc["started"], json.dumps(doc)))
                store.backend.execute("INSERT INTO results (run_id, device, host, started) VALUES (?, ?, ?, ?)",
                                      (n, "loop1", doc["host"], doc["started"]))
        store.backend.transaction(version_1)
    with Store(location, read_only=True) as store:
        assert sorted((r["run_id"], r["mode"]) for r in store.rows()) == [(1, "no-stall"), (2, "timed")]
        assert [r["run_id"] for r in store.rows(mode="no-stall")] == [1]
        assert store.backend.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION) == "2"

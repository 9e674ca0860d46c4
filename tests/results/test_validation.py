"""Results documents are checked against schemas/results.schema.json (with the engine's stdlib checker) before
they are stored; documents an earlier version stored without that check are left out of listings, baselines,
``regress`` and ``report`` with one warning line, never a traceback."""

import json
import sqlite3

import jsonschema
import pytest

from blkfleet.bundle import schema as mini
from blkfleet.cli import main
from blkfleet.results.store import Store
from helpers.synth import run_cli
from helpers.synth_results import SCHEMA_PATH, make_doc, write_doc


def one_line(capsys_or_result, code, *mentions):
    err = capsys_or_result.readouterr().err if hasattr(capsys_or_result, "readouterr") else capsys_or_result.stderr
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("blkfleet: "), err
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def _deep(doc):
    doc["total"]["extra"] = json.loads("[" * 200 + "]" * 200)


BAD = {
    "host-dict": (lambda d: d.update(host={"name": "a"}), "$.host: {\"name\": \"a\"} is not of type string"),
    "host-huge-int": (lambda d: d.update(host=10 ** 29), "$.host: 100000000000000000000000000000 is not of type"),
    "device-string": (lambda d: d["devices"].update(loop1="fast"), "$.devices.loop1: \"fast\" is not of type object"),
    "total-null": (lambda d: d.update(total=None), "$.total: null is not of type object"),
    "iops-nan": (lambda d: d["total"].update(iops=float("nan")), "NaN, which is not a JSON number"),
    "iops-inf-extra": (lambda d: d["total"].update(note=float("inf")), "Infinity, which is not a JSON number"),
    "no-devices": (lambda d: d.update(devices={}), "it has no devices"),
    "per-iteration-str": (lambda d: d.update(per_iteration="x"), "$.per_iteration: \"x\" is not of type array"),
    "by-op-unknown": (lambda d: d["total"]["by_op"].update(trim={"ios": 1, "bytes": 1}), "by_op.trim"),
    "acc-zero": (lambda d: d.update(acc_factor=0), "$.acc_factor: 0 is not more than 0"),
    "deep": (_deep, "nested more than 64 levels deep"),
}


@pytest.mark.parametrize("case", BAD)
def test_results_add_refuses_invalid_documents(tmp_path, capsys, case):
    change, message = BAD[case]
    doc = make_doc(seed=1)
    change(doc)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    good = write_doc(tmp_path / "good.json", make_doc(seed=2))
    db = tmp_path / "db.sqlite"
    assert main(["results", "add", "--db", str(db), good, str(path)]) == 2
    one_line(capsys, 2, str(path), message)
    with Store(str(db)) as store:
        assert store.rows() == []  # all checked before any is stored


def test_the_stdlib_checker_and_jsonschema_agree_on_results(tmp_path):
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for case, (change, _message) in BAD.items():
        doc = make_doc(seed=3)
        change(doc)
        if case in ("iops-nan", "iops-inf-extra", "no-devices", "deep"):
            continue  # stricter than JSON Schema: NaN and infinities are not JSON, and a run has devices
        assert not validator.is_valid(doc), case
        assert mini.problem(doc, schema), case
    doc = make_doc(seed=4)
    validator.validate(doc)
    mini.validate(doc, schema)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"{\"schema\": ", "not valid JSON"),
    (b"[1, 2]", "not a results document"),
    (b"{\"schema\": {\"x\": 1}}", "not a blkfleet results document (schema 'dict'"),
])
def test_results_add_refuses_files_that_are_not_results(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    assert main(["results", "add", "--db", str(tmp_path / "db"), str(path)]) == 2
    one_line(capsys, 2, str(path), message)


@pytest.mark.parametrize("command", [["results", "add"], ["report", "-o", "{tmp}/r.html", "--results"]])
def test_as_real_processes(tmp_path, command):
    doc = make_doc(seed=1)
    doc["total"] = None
    path = write_doc(tmp_path / "r.json", doc)
    argv = [a.format(tmp=tmp_path) for a in command] + [path]
    result = run_cli(*argv, "--db", tmp_path / "db.sqlite")
    assert result.returncode == 2
    one_line(result, 2, "$.total: null is not of type object")


# ------------------------------------------------------------------------ documents stored before the check

def store_unchecked(db, doc, source="old.json"):
    """Insert a document as the store did before it checked documents (the same rows, no schema check)."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    con = sqlite3.connect(db)
    with con:
        cur = con.execute("INSERT INTO runs (sha256, host, started, finished, engine_version, kernel, bundle_id, "
                          "source, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (str(hash(canonical)), str(doc.get("host")), doc["started"], None, "0.0.9", None, None,
                           source, canonical))
        for name in (doc["devices"] if isinstance(doc.get("devices"), dict) else {"loop1": None}):
            con.execute("INSERT INTO results (run_id, device, target, host, bundle_id, engine_version, started) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (cur.lastrowid, name, "/dev/loop7", str(doc.get("host")),
                                                         None, "0.0.9", doc["started"]))
    con.close()


@pytest.fixture
def old_store(tmp_path):
    """A store holding three valid runs and, between them, the two kinds of document that broke reports."""
    db = tmp_path / "db.sqlite"
    with Store(str(db)) as store:  # the tables, as any version made them
        store.add(make_doc(seed=1, started="2026-03-01T00:00:00+00:00"))
    bad = make_doc(seed=2, started="2026-03-02T00:00:00+00:00")
    bad["total"] = None
    store_unchecked(db, bad)
    worse = make_doc(seed=3, started="2026-03-03T00:00:00+00:00")
    worse["devices"]["loop1"] = "fast"
    store_unchecked(db, worse)
    for seed in (4, 5):
        write_doc(tmp_path / f"r{seed}.json", make_doc(seed=seed, started=f"2026-03-0{seed}T00:00:00+00:00"))
        assert main(["results", "add", "--db", str(db), str(tmp_path / f"r{seed}.json")]) == 0
    return db


def test_report_leaves_out_documents_stored_unchecked(old_store, tmp_path, capsys):
    """The reproduction: "total": null stored fine, then every later report failed with a traceback."""
    capsys.readouterr()
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(old_store), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    warning = captured.err.splitlines()
    assert len(warning) == 1 and warning[0].startswith("blkfleet: warning: "), captured.err
    assert "2 stored run(s) left out" in warning[0] and "run 2: not a valid results document: $.total: null" in \
        warning[0] and "run 3:" in warning[0]
    assert "3 runs" in captured.out and out.exists()


def test_regress_and_listings_leave_them_out(old_store, capsys):
    db = str(old_store)
    assert main(["results", "baseline", "set", "base", "--run", "1", "4", "--db", db]) == 0
    assert main(["results", "list", "--json", "--db", db]) == 0
    captured = capsys.readouterr()
    assert "left out" in captured.err
    assert [r["run"] for r in json.loads(captured.out.split("\n", 1)[1])] == [1, 4, 5]
    code = main(["regress", "--baseline", "base", "--runs", "5", "--json", "-", "--db", db])
    captured = capsys.readouterr()
    assert code in (0, 12), captured.err
    assert json.loads(captured.out)["result"]["groups"][0]["baseline_runs"] == [1, 4]
    assert [line for line in captured.err.splitlines() if "Traceback" in line] == []
    code = main(["regress", "--baseline", "base", "--runs", "2", "--db", db])
    assert code == 2  # an explicitly named rejected run is not a candidate
    assert main(["results", "show", "2", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["invalid"].startswith("not a valid results document: $.total: null")
    assert main(["results", "show", "3", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["devices"] == {"loop1": None}


def test_screening_is_kept_and_runs_once(old_store):
    con = sqlite3.connect(old_store)
    assert con.execute("SELECT run_id FROM rejected ORDER BY run_id").fetchall() == [(2,), (3,)]
    # runs 4 and 5 were checked when they were added: the screening is up to date
    assert con.execute("SELECT value FROM meta WHERE key = 'checked_through'").fetchone() == ("5",)
    bad = make_doc(seed=6, started="2026-03-06T00:00:00+00:00")
    bad["per_iteration"] = None
    store_unchecked(old_store, bad)  # an earlier version still in use adds one more
    lines = []
    with Store(str(old_store), warn=lines.append) as store:
        assert sorted(store.rejected) == [2, 3, 6]
        assert [r["run_id"] for r in store.rows()] == [1, 4, 5]
        store.rows()
    assert len(lines) == 1 and "3 stored run(s) left out" in lines[0]
    assert con.execute("SELECT value FROM meta WHERE key = 'checked_through'").fetchone() == ("6",)
    con.close()


def test_stored_text_that_is_not_json_is_rejected_too(tmp_path):
    db = tmp_path / "db.sqlite"
    with Store(str(db)) as store:
        store.add(make_doc(seed=1))
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE runs SET doc = ? WHERE id = 1", ("[" * 5000 + "]" * 5000,))
        con.execute("DELETE FROM meta WHERE key = 'checked_through'")
    con.close()
    lines = []
    with Store(str(db), warn=lines.append) as store:
        assert store.rows() == []
        assert "nested too deeply" in store.rejected[1]
    assert len(lines) == 1


@pytest.mark.parametrize("case", ["host-dict", "total-null", "deep"])
def test_results_check_refuses_what_add_refuses_and_stores_nothing(tmp_path, capsys, case):
    change, message = BAD[case]
    doc = make_doc(seed=1)
    change(doc)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert main(["results", "check", "--", str(path)]) == 2
    one_line(capsys, 2, message)
    good = write_doc(tmp_path / "good.json", make_doc(seed=2))
    assert main(["results", "check", good]) == 0
    assert capsys.readouterr().out.startswith(f"valid: {good}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "r.json"]

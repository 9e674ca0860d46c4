"""The results store: round trip of documents, indexed columns, tags, idempotent add, baselines, CLI, export."""

import csv
import io
import json
import sqlite3

import pytest

from blkfleet.cli import main
from blkfleet.errors import BlkfleetError
from blkfleet.results.store import Store
from helpers.synth_results import make_doc, validate, write_doc


def test_synthetic_documents_match_the_schema():
    validate(make_doc(seed=3))
    validate(make_doc(seed=4, slowdown=1.25, iterations=5))


def test_round_trip_keeps_the_whole_document(tmp_path):
    doc = make_doc(seed=1)
    with Store(str(tmp_path / "r" / "db.sqlite")) as store:
        run_id, new = store.add(doc, tags=[("kernel", "6.1"), ("pool", "a")], bundle_id="b-123", source="x.json")
        assert new
        run = store.get(run_id)
        assert run.doc == doc
        assert run.host == "hostA" and run.bundle_id == "b-123" and run.engine_version == "0.1.0"
        assert run.started == doc["started"] and run.source == "x.json"
        assert dict(run.tags) == {"kernel": "6.1", "pool": "a"}
        # the same document again: the same run, no duplicate rows; new tags are merged
        again, new = store.add(json.loads(json.dumps(doc)), tags=[("night", "1")])
        assert again == run_id and not new
        assert dict(store.get(run_id).tags) == {"kernel": "6.1", "pool": "a", "night": "1"}
        assert len(store.rows()) == 1


def test_one_row_per_run_and_device_with_indexed_columns(tmp_path):
    doc = make_doc(seed=2)
    second = dict(doc["devices"]["loop1"], target="/dev/loop9")
    doc["devices"]["loop2"] = second
    doc["device_map"]["loop2"] = "/dev/loop9"
    validate(doc)
    path = tmp_path / "db.sqlite"
    with Store(str(path)) as store:
        run_id, _ = store.add(doc, bundle_id="bun")
        store.add(make_doc(seed=3, host="hostB"))
    db = sqlite3.connect(path)
    rows = db.execute("SELECT run_id, device, target, host, bundle_id, engine_version, started FROM results "
                      "ORDER BY run_id, device").fetchall()
    assert rows[:2] == [(run_id, "loop1", "/dev/loop7", "hostA", "bun", "0.1.0", doc["started"]),
                        (run_id, "loop2", "/dev/loop9", "hostA", "bun", "0.1.0", doc["started"])]
    assert rows[2][3] == "hostB"
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"results_host_device", "results_bundle", "results_started", "tags_key_value"} <= indexes
    with Store(str(path)) as store:
        assert [r["device"] for r in store.rows(device="/dev/loop9")] == ["loop2"]
        assert [r["host"] for r in store.rows(host="hostB")] == ["hostB"]


def test_filters_by_tag(tmp_path):
    with Store(str(tmp_path / "db")) as store:
        a, _ = store.add(make_doc(seed=1), tags=[("env", "prod")])
        store.add(make_doc(seed=2), tags=[("env", "test")])
        assert [r.id for r in store.runs(tags=[("env", "prod")])] == [a]


def test_rejects_what_is_not_a_results_document(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something-else"}))
    assert main(["results", "add", "--db", str(tmp_path / "db"), str(bad)]) == 2
    notjson = tmp_path / "n.json"
    notjson.write_text("{")
    assert main(["results", "add", "--db", str(tmp_path / "db"), str(notjson)]) == 2
    with Store(str(tmp_path / "db")) as store, pytest.raises(BlkfleetError):
        store.get(1)


def test_cli_add_list_show_export_baseline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [write_doc(tmp_path / f"r{i}.json", make_doc(seed=i, started=f"2026-02-0{i + 1}T01:00:00+00:00"))
             for i in range(4)]
    assert main(["results", "add", *files[:3], "--tag", "night=yes", "--bundle-id", "bun1"]) == 0
    assert (tmp_path / "results" / "blkfleet.sqlite").exists()  # the default store, relative to the cwd
    assert main(["results", "add", files[3]]) == 0
    out = capsys.readouterr().out
    assert out.count("added: run") == 4
    assert main(["results", "add", files[0]]) == 0
    assert "already stored: run 1" in capsys.readouterr().out

    assert main(["results", "list", "--json", "--tag", "night=yes"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in listed] == [1, 2, 3]
    assert listed[0]["bundle_id"] == "bun1" and listed[0]["device"] == "loop1" and listed[0]["iterations"] == 3
    assert main(["results", "list"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:4] == ["run", "started", "host", "device"] and len(text.splitlines()) == 5

    assert main(["results", "show", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["document"] == json.loads((tmp_path / "r1.json").read_text())
    assert main(["results", "show", "99"]) == 2

    assert main(["results", "export", "--format", "csv", "-o", "out.csv"]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert len(rows) == 4 and rows[0]["tags"] == "night=yes"
    assert main(["results", "export"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert len(exported["runs"]) == 4 and exported["runs"][3]["document"]["host"] == "hostA"

    assert main(["results", "baseline", "set", "nightly", "--last", "2"]) == 0
    assert main(["results", "baseline", "set", "first", "--run", "1", "2"]) == 0
    assert main(["results", "baseline", "set", "none", "--run", "42"]) == 2
    capsys.readouterr()
    assert main(["results", "baseline", "list", "--json"]) == 0
    baselines = {b["name"]: [m["run"] for m in b["members"]] for b in json.loads(capsys.readouterr().out)}
    assert baselines == {"nightly": [3, 4], "first": [1, 2]}


def test_the_schema_check_of_the_tests_is_real():
    import jsonschema

    doc = make_doc(seed=5)
    del doc["per_iteration"][0]["iops"]
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_bundle_id_from_the_document(tmp_path):
    doc = make_doc(seed=6)
    doc["bundle_id"] = "sha256:abc"  # replay --bundle writes it into the results
    validate(doc)
    with Store(str(tmp_path / "db")) as store:
        run_id, _ = store.add(doc)
        assert store.get(run_id).bundle_id == "sha256:abc"
        assert [r["run_id"] for r in store.rows(bundle_id="sha256:abc")] == [run_id]

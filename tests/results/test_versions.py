"""Both versions of the results document: version 1 documents (written by earlier engines) are checked against
their own schema, stored, listed, regressed against and reported; ``upgrade`` reads them as version 2, which
validates; documents of an unknown version are refused."""

import json

import pytest

from blkfleet.cli import main
from blkfleet.results.document import SCHEMA, SCHEMA_V1, upgrade
from blkfleet.results.store import Store, document_problem
from helpers.synth_results import make_doc, validate, write_doc


def test_both_versions_are_valid_documents():
    for version in (1, 2):
        doc = make_doc(seed=version, version=version)
        validate(doc)
        assert document_problem(doc) is None
    old = make_doc(seed=3, version=1)
    old["ioengine"] = old.pop("engine")  # a version 1 document with a version 2 field is not valid
    assert "engine" in document_problem(old)
    new = make_doc(seed=3)
    new["schema"] = "blkfleet-results/3"
    assert "expected 'blkfleet-results/2' or 'blkfleet-results/1'" in document_problem(new)


def test_upgrade_reads_version_1_as_version_2():
    old = make_doc(seed=5, version=1)
    new = upgrade(old)
    assert old["schema"] == SCHEMA_V1 and "engine" in old  # the document itself is left as it was
    validate(new)
    assert new["schema"] == SCHEMA and new["ioengine"] == old["engine"] and "engine" not in new
    assert new["workers"] == [{"slot": 0, **old["workers"][0]}]
    assert new["total"] == old["total"] and new["per_iteration"] == old["per_iteration"]
    lat, old_lat = new["distributions"]["latency"], old["distributions"]["latency"]
    assert lat["scheme"] == "1-2-5" and sum(lat["counts"]) == sum(old_lat["counts"])
    nonzero = [(i, c) for i, c in enumerate(old_lat["counts"]) if c]
    bounds = old_lat["bounds_us"]
    assert lat["upper"] == [bounds[i] if i < len(bounds) else None for i, _c in nonzero]
    assert lat["lower"] == [bounds[i - 1] if i else None for i, _c in nonzero]
    series = new["distributions"]["timeline"]["series"]
    assert series == [{"device": "*", "op": "*", "ios": old["distributions"]["timeline"]["ios"]}]
    assert upgrade(new) is new


def test_store_regress_and_report_read_both_versions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "db.sqlite")
    files = [write_doc(tmp_path / f"r{i}.json", make_doc(seed=i, version=1 if i < 4 else 2,
                                                         started=f"2026-05-{i + 1:02d}T02:00:00+00:00"))
             for i in range(7)]
    assert main(["results", "add", "--db", db, *files]) == 0
    out = capsys.readouterr().out
    assert out.count("added: run") == 7
    with Store(db, create=False) as store:
        assert not store.rejected
        assert [json.loads(json.dumps(r.doc))["schema"] for r in store.runs()] == [SCHEMA_V1] * 4 + [SCHEMA] * 3
        assert all(row["latency_p99_us"] for row in store.listing())
    assert main(["results", "baseline", "set", "old", "--db", db, "--run", "1", "2", "3", "4"]) == 0
    assert main(["regress", "--db", db, "--baseline", "old", "--run", "5", "6", "7"]) in (0, 10, 12)
    assert "Traceback" not in capsys.readouterr().err
    assert main(["report", "--db", db, "--baseline", "old", "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert 'data-plot="latency_cdf"' in html and 'data-plot="trend_latency_p99"' in html


@pytest.mark.parametrize("version", [1, 2])
def test_results_check_takes_both_versions(tmp_path, capsys, version):
    f = write_doc(tmp_path / "r.json", make_doc(seed=9, version=version))
    assert main(["results", "check", f]) == 0
    assert "valid:" in capsys.readouterr().out

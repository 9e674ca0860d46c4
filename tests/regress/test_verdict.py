"""``blkfleet regress`` on synthetic results documents (schema-valid): no false regression over unchanged re-runs,
an injected 20 % IOPS drop caught with exit code 10, insufficient samples, improvements, bad input."""

import json

import pytest

from blkfleet.cli import main
from blkfleet.regress.verdict import METRICS, compare_metric, evaluate
from blkfleet.results.store import Store
from helpers.synth_results import make_doc, validate, write_doc

BASE_SEEDS = range(100, 105)


def _stamp(day, hour=2):
    return f"2026-04-{day:02d}T{hour:02d}:00:00.000+00:00"


@pytest.fixture
def store(tmp_path):
    """A store with 5 baseline runs (3 iterations each, 2 % noise) as baseline 'nightly'."""
    db = str(tmp_path / "results" / "blkfleet.sqlite")
    with Store(db) as s:
        for i, seed in enumerate(BASE_SEEDS):
            doc = make_doc(seed=seed, started=_stamp(1 + i))
            validate(doc)
            s.add(doc)
        s.set_baseline("nightly", last=5)
        yield s


def _add(store, doc):
    validate(doc)
    return store.add(doc)[0]


def _verdicts(result):
    return {m["metric"]: m["verdict"] for g in result["groups"] for m in g["metrics"]}


def test_five_unchanged_reruns_give_no_false_regression(store):
    ids = [_add(store, make_doc(seed=200 + i, started=_stamp(10 + i))) for i in range(5)]
    for run_id in ids:  # each night on its own
        result = evaluate(store, "nightly", run_ids=[run_id])
        assert result["verdict"] == "pass", json.dumps(result["groups"], indent=1)
        assert result["exit_code"] == 0
        assert set(_verdicts(result).values()) == {"pass"}
    together = evaluate(store, "nightly", last=5)
    assert together["groups"][0]["candidate_runs"] == ids
    assert together["counts"]["regression"] == 0 and together["exit_code"] == 0


def test_no_false_regression_over_many_nights(store):
    """Fifty unchanged nights with 2 % noise: not one metric is flagged (tolerance and test together)."""
    flagged = 0
    for night in range(50):
        run_id = _add(store, make_doc(seed=1000 + night, started=_stamp(12, 0) + str(night)))
        flagged += evaluate(store, "nightly", run_ids=[run_id])["counts"]["regression"]
    assert flagged == 0


def test_injected_20_percent_iops_drop_is_a_regression(store, tmp_path, capsys):
    run_id = _add(store, make_doc(seed=300, started=_stamp(20), iops=8000.0))
    result = evaluate(store, "nightly")
    assert result["groups"][0]["candidate_runs"] == [run_id]
    v = _verdicts(result)
    assert v["iops"] == "regression" and v["mb_s"] == "regression"
    assert v["latency_p50"] == "pass" and v["latency_p99"] == "pass"
    iops = result["groups"][0]["metrics"][0]
    assert iops["change_pct"] == pytest.approx(-20, abs=3) and iops["p"] < 0.05
    assert result["verdict"] == "regression" and result["exit_code"] == 10

    db = store.path
    out_json, out_md = tmp_path / "verdict.json", tmp_path / "verdict.md"
    code = main(["regress", "--db", db, "--baseline", "nightly", "--json", str(out_json), "--markdown", str(out_md)])
    assert code == 10
    doc = json.loads(out_json.read_text())
    assert doc["exit_code"] == 10 and doc["counts"]["regression"] == 2
    md = out_md.read_text()
    assert md.startswith("## blkfleet regress: REGRESSION")
    assert "| hostA | loop1 | IOPS |" in md and "**REGRESSION**" in md
    assert md == capsys.readouterr().out  # also printed
    # the same with Mann-Whitney (15 baseline samples against 3: enough to reach p < 0.05)
    assert main(["regress", "--db", db, "--baseline", "nightly", "--test", "mann-whitney", "-q"]) == 10


def test_a_slower_device_regresses_on_latency_too(store):
    _add(store, make_doc(seed=301, started=_stamp(21), slowdown=1.25))
    v = _verdicts(evaluate(store, "nightly"))
    assert v == {"iops": "regression", "mb_s": "regression", "latency_p50": "regression",
                 "latency_p99": "regression", "lateness_p99": "pass"}  # +15 us lateness: under the 50 us floor


def test_small_significant_change_within_tolerance_passes(store):
    _add(store, make_doc(seed=302, started=_stamp(22), iops=9700.0, noise=0.002))  # -3 %
    iops = evaluate(store, "nightly", metrics=["iops"])["groups"][0]["metrics"][0]
    assert iops["verdict"] == "pass" and "within tolerance" in iops["reason"]
    tightened = evaluate(store, "nightly", metrics=["iops"], tolerances={"iops": 1.0})
    assert _verdicts(tightened) == {"iops": "regression"}


def test_faster_is_an_improvement(store):
    _add(store, make_doc(seed=303, started=_stamp(23), slowdown=0.7))
    result = evaluate(store, "nightly", metrics=["iops", "latency_p99"])
    assert _verdicts(result) == {"iops": "improvement", "latency_p99": "improvement"}
    assert result["exit_code"] == 0


def test_too_few_samples_is_insufficient_not_pass(tmp_path):
    db = str(tmp_path / "db.sqlite")
    with Store(db) as s:
        s.add(make_doc(seed=1, started=_stamp(1), iterations=2))
        s.set_baseline("thin", last=1)
        s.add(make_doc(seed=2, started=_stamp(2), iterations=1, iops=5000.0))
        result = evaluate(s, "thin")
    assert set(_verdicts(result).values()) == {"insufficient"}
    assert result["exit_code"] == 12
    assert main(["regress", "--db", db, "--baseline", "thin", "-q"]) == 12
    assert main(["regress", "--db", db, "--baseline", "thin", "-q", "--insufficient-ok"]) == 0


def test_mann_whitney_cannot_decide_three_against_three():
    m = METRICS["iops"]
    out = compare_metric(m, [100.0, 101.0, 99.0], [50.0, 51.0, 49.0], test="mann-whitney")
    assert out["verdict"] == "insufficient" and "cannot reach" in out["reason"]
    assert compare_metric(m, [100.0, 101.0, 99.0], [50.0, 51.0, 49.0])["verdict"] == "regression"


def test_multi_device_runs_give_one_sample_per_run(tmp_path):
    def two_devices(seed, day, iops=10000.0):
        doc = make_doc(seed=seed, started=_stamp(day), iops=iops)
        doc["devices"]["loop2"] = dict(doc["devices"]["loop1"], target="/dev/loop8")
        doc["device_map"]["loop2"] = "/dev/loop8"
        validate(doc)
        return doc

    with Store(str(tmp_path / "db")) as s:
        for i in range(4):
            s.add(two_devices(400 + i, 1 + i))
        s.set_baseline("b", last=4)
        for i in range(3):
            s.add(two_devices(500 + i, 10 + i, iops=7000.0))
        result = evaluate(s, "b", last=3)
    assert [(g["device"], g["sample_source"]) for g in result["groups"]] == [("loop1", "per-run"),
                                                                             ("loop2", "per-run")]
    assert all(m["baseline"]["n"] == 4 and m["candidate"]["n"] == 3 for g in result["groups"] for m in g["metrics"])
    assert result["groups"][0]["metrics"][0]["verdict"] == "regression"


def test_interrupted_runs_are_left_out(store):
    doc = make_doc(seed=304, started=_stamp(24), iops=1000.0)
    doc["interrupted"] = True
    _add(store, doc)
    result = evaluate(store, "nightly")
    assert result["verdict"] == "insufficient" and any("interrupted" in w for w in result["warnings"])


def test_other_host_is_not_in_the_baseline(store):
    run_id = _add(store, make_doc(seed=305, host="hostB", started=_stamp(25)))
    result = evaluate(store, "nightly", run_ids=[run_id])
    assert result["verdict"] == "insufficient"
    assert any("not in baseline" in w for w in result["warnings"])


@pytest.mark.parametrize("argv", [
    ["--baseline", "nosuch"],
    ["--baseline", "nightly", "--tolerance", "iops"],
    ["--baseline", "nightly", "--tolerance", "speed=5"],
    ["--baseline", "nightly", "--alpha", "1.5"],
    ["--baseline", "nightly", "--runs", "999"],
    ["--baseline", "nightly", "--metric", "speed"],
])
def test_bad_input_exits_2(store, argv):
    assert main(["regress", "--db", store.path, "-q", *argv]) == 2


def test_missing_store_exits_2(tmp_path):
    assert main(["regress", "--db", str(tmp_path / "none.sqlite"), "--baseline", "x"]) == 2
    assert not (tmp_path / "none.sqlite").exists()


def test_cli_defaults_to_the_store_under_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [write_doc(tmp_path / f"b{i}.json", make_doc(seed=600 + i, started=_stamp(1 + i))) for i in range(3)]
    assert main(["results", "add", *files]) == 0
    assert main(["results", "baseline", "set", "base", "--run", "1", "2", "3"]) == 0
    assert main(["results", "add", write_doc(tmp_path / "c.json", make_doc(seed=700, started=_stamp(9)))]) == 0
    assert main(["regress", "--baseline", "base", "-q"]) == 0
    assert main(["results", "add", write_doc(tmp_path / "d.json",
                                             make_doc(seed=701, started=_stamp(10), iops=8000.0))]) == 0
    assert main(["regress", "--baseline", "base", "-q", "--json", "v.json"]) == 10
    assert json.loads((tmp_path / "v.json").read_text())["groups"][0]["candidate_runs"] == [5]


def test_runs_older_than_the_baseline_are_no_candidates(tmp_path, capsys):
    """Five runs, the baseline the last four (runs 2-5): regress took run 1, older than the baseline, as the
    candidate. Only runs after the baseline's newest are candidates; an older one only when named."""
    db = str(tmp_path / "blkfleet.sqlite")
    with Store(db) as s:
        ids = [_add(s, make_doc(seed=300 + i, started=_stamp(1 + i))) for i in range(5)]
    assert main(["results", "baseline", "set", "nightly", "--last", "4", "--db", db]) == 0
    capsys.readouterr()
    with Store(db) as s:
        assert sorted(r["run_id"] for r in s.baseline("nightly")) == ids[1:]
        result = evaluate(s, "nightly")
        assert result["groups"] == [] and result["warnings"][0].startswith("no candidate runs")
        assert evaluate(s, "nightly", last=3)["groups"] == []
        assert evaluate(s, "nightly", run_ids=[ids[0]])["groups"][0]["candidate_runs"] == [ids[0]]
        newer = _add(s, make_doc(seed=400, started=_stamp(9)))
        assert evaluate(s, "nightly", last=3)["groups"][0]["candidate_runs"] == [newer]

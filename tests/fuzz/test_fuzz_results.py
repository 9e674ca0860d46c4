"""Fuzz: results documents, through ``results add`` (checked before they are stored) and ``report --results``,
and documents stored unchecked (as earlier versions did) through ``results list``, ``report`` and ``regress``.
10,000 cases in this process, and a sample as real processes."""

import json
import random
import sqlite3

from blkfleet.cli import main
from blkfleet.results.store import Store
from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_json, scratch, subprocess_cases
from helpers.synth_results import make_doc

SEEDS = [make_doc(seed=s, iterations=1 + s % 3, ios=100 + s, timeline_s=0.3) for s in range(4)]


def results_case(rng, work):
    (work / "r.json").write_bytes(mutate_json(rng.choice(SEEDS), rng))
    if rng.random() < 0.97:
        return ["results", "add", "--db", work / "db.sqlite", work / "r.json"]
    return ["report", "--db", work / "none.sqlite", "-o", work / "report.html", "--results", work / "r.json"]


def test_fuzz_results_documents(tmp_path):
    work = scratch("fuzz-results-")
    try:
        fuzz = Fuzz("results", tmp_path / "failures")
        for seed in range(CASES):
            if seed % 500 == 0:
                clear(work)  # a store grows with every valid document: start again now and then
            fuzz.case(seed, results_case(random.Random(f"results-{seed}"), work), [work / "r.json"])
        assert fuzz.count == CASES and fuzz.outcomes[0] > CASES // 100, fuzz.outcomes
        assert fuzz.outcomes[2] > CASES // 10, fuzz.outcomes
    finally:
        clear(work)
        work.rmdir()


def store_unchecked(db, text, started):
    """A document stored the way earlier versions stored anything that parsed."""
    con = sqlite3.connect(db)
    with con:
        cur = con.execute("INSERT INTO runs (sha256, host, started, doc) VALUES (?, 'h', ?, ?)",
                          (f"x{started}", started, text))
        con.execute("INSERT INTO results (run_id, device, target, host, started) VALUES (?, 'loop1', 't', 'h', ?)",
                    (cur.lastrowid, started))
    con.close()


def test_fuzz_documents_stored_unchecked(tmp_path):
    """Every later reader of a store holding broken documents: one warning line, never a traceback."""
    work = scratch("fuzz-stored-")
    try:
        fuzz = Fuzz("stored-results", tmp_path / "failures")
        for seed in range(CASES // 20):
            rng = random.Random(f"stored-{seed}")
            clear(work)
            db = work / "db.sqlite"
            with Store(str(db)) as store:
                store.add(SEEDS[0])
            for i in range(3):
                text = mutate_json(rng.choice(SEEDS), rng)
                store_unchecked(db, text.decode("utf-8", "replace"), f"2026-05-0{i + 1}T00:00:00+00:00")
            assert main(["results", "baseline", "set", "b", "--run", "1", "--db", str(db)]) in (0, 2)
            argv = rng.choice((["results", "list", "--json"], ["results", "list"], ["results", "export"],
                               ["results", "export", "--format", "csv"], ["results", "show", str(rng.randrange(1, 5))],
                               ["regress", "--baseline", "b", "--last", "1", "-q"],
                               ["report", "-o", str(work / "r.html")], ["results", "baseline", "list"]))
            rc, err = _run(fuzz, seed, argv + ["--db", db], work)
            assert rc in (0, 2, 10, 12)
    finally:
        clear(work)
        work.rmdir()


def _run(fuzz, seed, argv, work):
    """Like Fuzz.case, but a warning line about left-out runs may come before the answer, and regress has its
    verdict exit codes."""
    from helpers.fuzz import run_main

    rc, _out, err = run_main(argv)
    lines = [line for line in err.splitlines() if not line.startswith("blkfleet: warning: ")]
    warnings = len(err.splitlines()) - len(lines)
    problem = None
    if "Traceback" in err or warnings > 1:
        problem = f"stored case {seed}: {err[-500:]!r}"
    elif rc == 2 and (len(lines) != 1 or not lines[0].startswith("blkfleet: ")):
        problem = f"stored case {seed}: exit 2 without one 'blkfleet: ' line: {err[-500:]!r}"
    elif rc not in (0, 2, 10, 12):
        problem = f"stored case {seed}: exit {rc}"
    if problem:
        fuzz.failure(seed, argv, [work], problem)
        raise AssertionError(problem)
    fuzz.count += 1
    return rc, err


def test_fuzz_results_as_processes(tmp_path):
    cases = []
    for seed in range(SUBPROCESS_CASES):
        work = tmp_path / f"c{seed}"
        work.mkdir()
        cases.append((f"results process case {seed}", results_case(random.Random(f"results-process-{seed}"), work)))
    assert subprocess_cases(cases) == []


def test_the_seeds_are_stored(tmp_path):
    for i, doc in enumerate(SEEDS):
        (tmp_path / f"{i}.json").write_text(json.dumps(doc))
        assert main(["results", "add", "--db", str(tmp_path / "db"), str(tmp_path / f"{i}.json")]) == 0

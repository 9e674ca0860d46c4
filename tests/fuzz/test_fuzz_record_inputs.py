"""Fuzz: what ``record`` reads, its DEV.blktrace.N input traces (native and ``--compat`` conversion) and the
capture.json beside them (``--accept-missing`` or not). 10,000 cases of each in this process, and a sample as
real processes."""

import json
import os
import random
import shutil

import pytest

from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_bytes, mutate_json, scratch, subprocess_cases
from helpers.fuzz_seeds import trace_seeds
from helpers.synth import encode, typical_records

DEVICE = "fz"


def trace_case(rng, seeds, src, out):
    clear(src)
    clear(out)
    data, fields = rng.choice(seeds)
    (src / f"{DEVICE}.blktrace.0").write_bytes(mutate_bytes(data, rng, fields))
    if rng.random() < 0.3:
        (src / f"{DEVICE}.blktrace.1").write_bytes(rng.choice(seeds)[0])
    options = rng.choice(([], [], ["--compat"], ["--compat", "-M", "512"], ["-M", "4096", "-m", "1"],
                          ["--compat", "-M", "1"]))
    return ["record", "-q", *options, "-d", src, "-D", out, DEVICE]


def capture_state(src):
    """capture.json as 'blkfleet capture stop' leaves it for the traces in ``src``."""
    files = {}
    for name in sorted(os.listdir(src)):
        data = (src / name).read_bytes()
        recs = typical_records(6) if name.endswith(".0") else typical_records(3, cpu=1)
        assert encode(recs) == data
        queued = sum(1 for r in recs if r.action & 0xFFFF == 1)
        files[name] = {"records": len(recs), "queued": queued, "bytes": 4096 * queued, "file_bytes": len(data),
                       "drops": 0, "drop_reports": 0}
    device = {"files": files, "records": 0, "queued": sum(f["queued"] for f in files.values()), "bytes": 0,
              "dev": "7,4"}
    return {"state": "stopped", "devices": [DEVICE], "pid": 4242, "summary": {
        "devices": {DEVICE: device}, "queued": device["queued"], "files": sorted(files), "drops": 0, "error": None}}


def capture_case(rng, seed_doc, traces, src, out):
    clear(out)
    for name, data in traces.items():
        (src / name).write_bytes(data if rng.random() < 0.9 else data[:rng.randrange(len(data) + 1)])
    (src / "capture.json").write_bytes(mutate_json(seed_doc, rng))
    options = rng.choice(([], ["--accept-missing"], ["--accept-missing", "--json", "-"], ["--compat"],
                          ["--compat", "--accept-missing", "--json", out / "s.json"]))
    return ["record", "-q", *options, "-d", src, "-D", out, DEVICE]


@pytest.fixture
def dirs():
    src, out = scratch("fuzz-record-in-"), scratch("fuzz-record-out-")
    try:
        yield src, out
    finally:
        shutil.rmtree(src)
        shutil.rmtree(out)


def test_fuzz_traces(tmp_path, dirs):
    src, out = dirs
    seeds = trace_seeds()
    fuzz = Fuzz("trace", tmp_path / "failures")
    for seed in range(CASES):
        fuzz.case(seed, trace_case(random.Random(f"trace-{seed}"), seeds, src, out), [src])
    assert fuzz.count == CASES and fuzz.outcomes[0] > CASES // 100 and fuzz.outcomes[2] > CASES // 10, fuzz.outcomes


def _capture_inputs(src):
    traces = {f"{DEVICE}.blktrace.0": encode(typical_records(6)),
              f"{DEVICE}.blktrace.1": encode(typical_records(3, cpu=1))}
    for name, data in traces.items():
        (src / name).write_bytes(data)
    return traces, capture_state(src)


def test_fuzz_capture_json(tmp_path, dirs):
    src, out = dirs
    traces, doc = _capture_inputs(src)
    fuzz = Fuzz("capture-json", tmp_path / "failures")
    for seed in range(CASES):
        fuzz.case(seed, capture_case(random.Random(f"capture-{seed}"), doc, traces, src, out), [src])
    assert fuzz.count == CASES and fuzz.outcomes[0] > CASES // 20 and fuzz.outcomes[2] > CASES // 20, fuzz.outcomes


@pytest.mark.parametrize("kind", ["trace", "capture-json"])
def test_fuzz_record_inputs_as_processes(kind, tmp_path):
    cases = []
    for seed in range(SUBPROCESS_CASES):
        rng = random.Random(f"{kind}-process-{seed}")
        src, out = tmp_path / f"in{seed}", tmp_path / f"out{seed}"
        src.mkdir()
        out.mkdir()
        if kind == "trace":
            argv = trace_case(rng, trace_seeds(), src, out)
        else:
            traces, doc = _capture_inputs(src)
            argv = capture_case(rng, doc, traces, src, out)
        cases.append((f"{kind} process case {seed}", argv))
    assert subprocess_cases(cases) == []


def test_the_capture_seed_is_accepted(tmp_path):
    """The unmutated capture.json matches its traces (so the fuzzed cases start from a passing check)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    _traces, doc = _capture_inputs(src)
    (src / "capture.json").write_text(json.dumps(doc))
    fuzz = Fuzz("capture-json", tmp_path / "failures")
    assert fuzz.case(0, ["record", "-q", "-d", src, "-D", out, DEVICE], [src]) == 0

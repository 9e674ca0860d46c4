"""The committed real-kernel traces under tests/data agree with their meta.json."""

import json
import os

import pytest

from blkfleet.trace import TraceReader
from blkfleet.trace.actions import is_queue

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
WORKLOADS = ("randmix", "seqlarge", "fs", "multicpu")


def load(workload):
    folder = os.path.join(DATA, workload)
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    files = {}
    for name in meta["files"]:
        with TraceReader(os.path.join(folder, name)) as r:
            files[name] = list(r)
    return meta, files


@pytest.mark.parametrize("workload", WORKLOADS)
def test_fixture_matches_meta(workload):
    meta, files = load(workload)
    dev = meta["device"]
    assert sorted(files) == [f"{dev}.blktrace.{cpu}" for cpu in range(len(files))]
    for name, records in files.items():
        cpu = int(name.rsplit(".", 1)[1])
        assert [r.sequence for r in records] == list(range(1, len(records) + 1))
        assert all(r.cpu == cpu and r.version == 7 for r in records)
        assert sum(is_queue(r.action) for r in records) == meta["files"][name]["queued"]
        assert os.path.getsize(os.path.join(DATA, workload, name)) == meta["files"][name]["size"]
    every = [r for records in files.values() for r in records]
    assert len(every) == meta["records"]
    assert {r.action_name for r in every} >= {"queue", "issue", "complete"}
    assert meta["lost"] == {} and meta["skipped_bytes"] == 0
    if meta["fio_ios"] is not None:
        assert meta["queued"] == meta["fio_ios"]


def test_fs_fixture_has_flush_fua_discard_meta():
    _, files = load("fs")
    cats = set()
    for records in files.values():
        for r in records:
            if is_queue(r.action):
                cats.update(r.categories)
    assert {"flush", "fua", "discard", "meta", "sync", "read", "write"} <= cats


def test_multicpu_fixture_queues_on_both_cpus():
    meta, _ = load("multicpu")
    assert all(f["queued"] > 0 for f in meta["files"].values())

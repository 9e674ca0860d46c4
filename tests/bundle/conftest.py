"""Fixtures for the bundle tests: replay files recorded from the real traces in tests/data, a bundle of them."""

import json

import pytest

from blkfleet.bundle import pack
from blkfleet.bundle.zipapp import engine_bytes
from helpers import DATA
from helpers.bundles import record


@pytest.fixture(scope="session")
def engine():
    """engine.pyz bytes, built once."""
    return engine_bytes()


@pytest.fixture(scope="session")
def native_dir(tmp_path_factory):
    """randmix recorded in the native format, with the record --json summary as rec.json."""
    out = tmp_path_factory.mktemp("native") / "replay"
    record(DATA / "randmix", out, "--json", str(out.parent / "rec.json"))
    return out


@pytest.fixture(scope="session")
def trace_dir(tmp_path_factory):
    """A capture directory of randmix's device as 'blkfleet capture' leaves it: capture.json with the device's
    facts (``block_devices``: the fixture's loop device, 128 MiB, 512-byte blocks) and host."""
    meta = json.loads((DATA / "randmix" / "meta.json").read_text())
    out = tmp_path_factory.mktemp("trace")
    (out / "capture.json").write_text(json.dumps({
        "version": 2, "state": "stopped", "host": "src0", "devices": [meta["device"]],
        "block_devices": {meta["device"]: {"dev": "7:1", "size": meta["disk_size"], "logical_block_size": 512}}}))
    return out


@pytest.fixture(scope="session")
def bundle_file(tmp_path_factory, native_dir, engine, trace_dir):
    path = tmp_path_factory.mktemp("bundle") / "randmix.bundle"
    pack.create(str(path), str(native_dir), ("loop1",), trace_dir=str(trace_dir),
                record_json=str(native_dir.parent / "rec.json"), source_host="src1", engine=engine)
    return path


"""Fixtures for the bundle tests: replay files recorded from the real traces in tests/data, a bundle of them."""

import pytest
from bundle_helpers import DATA, record

from blkfleet.bundle import pack
from blkfleet.bundle.zipapp import engine_bytes


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
def bundle_file(tmp_path_factory, native_dir, engine):
    path = tmp_path_factory.mktemp("bundle") / "randmix.bundle"
    pack.create(str(path), str(native_dir), ("loop1",), trace_dir=str(DATA / "randmix"),
                record_json=str(native_dir.parent / "rec.json"), source_host="src1", engine=engine)
    return path


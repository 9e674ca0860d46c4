"""Helpers for the bundle tests: recording the real traces of tests/data, reading and hand-making tar files."""

import io
import json
import tarfile

from blkfleet.cli import main

PY39 = "/root/.pyenv/versions/3.9.18/bin/python3"


def record(src, out, *extra):
    out.mkdir(parents=True, exist_ok=True)
    assert main(["record", "-q", "-d", str(src), "-D", str(out), *extra, "loop1"]) == 0
    return out


def members(path):
    """[(TarInfo, bytes)] of a bundle, in order."""
    with tarfile.open(path, "r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]


def write_tar(path, entries):
    """Write a tar from [(TarInfo, bytes)] as given (for hand-made bad bundles)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def manifest_of(path):
    with tarfile.open(path, "r:") as tar:
        return json.loads(tar.extractfile("manifest.json").read())

"""Input files whose content becomes what root later writes, or vouches for, are read only when nobody else can
change them: ``import``'s traces (they become replay files that ``replay -W`` writes) and ``bundle create
--record-json`` (what the bundle's manifest says of its files). One another user owns, may write, may replace (in
a directory they can write, not sticky) or redirect (their link on the way) is refused with one line."""

import os
import shutil

import pytest

from helpers import DATA
from helpers.bundles import record
from helpers.synth import fails, run_cli

NOBODY = 65534
CASES = ["theirs", "writable by all", "in a directory writable by all", "through their link", "their link"]
IOLOG = DATA / "foreign" / "fio_v3.iolog"


def placed(tmp_path, source, whose):
    """A copy of ``source`` (root's) reachable as ``whose`` says; returns the path to give the command."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    ours = tmp_path / "ours"
    ours.mkdir()
    shutil.copy(source, ours / source.name)
    path = {"theirs": ours / source.name, "writable by all": ours / source.name,
            "in a directory writable by all": tmp_path / "open" / source.name,
            "through their link": shared / "link" / source.name, "their link": shared / "file-link"}[whose]
    if whose == "theirs":
        os.chown(path, NOBODY, NOBODY)
    if whose == "writable by all":
        os.chmod(path, 0o666)
    if whose == "in a directory writable by all":
        path.parent.mkdir()
        os.chmod(path.parent, 0o777)
        shutil.copy(source, path)
    if whose == "through their link":
        (shared / "link").symlink_to(ours)
        os.lchown(shared / "link", NOBODY, NOBODY)
    if whose == "their link":
        path.symlink_to(ours / source.name)
        os.lchown(path, NOBODY, NOBODY)
    return path


@pytest.mark.parametrize("whose", CASES)
def test_import_reads_only_traces_nobody_else_can_change(tmp_path, whose):
    path = placed(tmp_path, IOLOG, whose)
    out = tmp_path / "out"
    fails(run_cli("import", "fio-iolog", "-q", path, "-D", out), f"{path}: refusing this import input")
    assert not out.exists() or not [p for p in out.iterdir() if ".replay." in p.name]


def test_import_reads_roots_trace_in_a_sticky_directory(tmp_path):
    """In a sticky directory (as /tmp) only the file's owner may replace it: root's trace there is imported."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    shutil.copy(IOLOG, shared / IOLOG.name)
    proc = run_cli("import", "fio-iolog", "-q", shared / IOLOG.name, "-D", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert [p for p in (tmp_path / "out").iterdir() if ".replay." in p.name]


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    out = tmp_path_factory.mktemp("native") / "replay"
    record(DATA / "randmix", out, "--json", str(out.parent / "rec.json"))
    return out


@pytest.mark.parametrize("whose", CASES)
def test_bundle_create_reads_only_a_record_summary_nobody_else_can_change(tmp_path, native, whose):
    path = placed(tmp_path, native.parent / "rec.json", whose)
    bundle = tmp_path / "b.bundle"
    fails(run_cli("bundle", "create", "-d", native, "-o", bundle, "--record-json", path, "loop1"),
          f"{path}: refusing this record summary")
    assert not bundle.exists()


def test_bundle_create_reads_roots_record_summary_in_a_sticky_directory(tmp_path, native):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    shutil.copy(native.parent / "rec.json", shared / "rec.json")
    proc = run_cli("bundle", "create", "-d", native, "-o", tmp_path / "b.bundle", "--record-json",
                   shared / "rec.json", "loop1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.bundle").is_file()

"""Hostile bundles and bundle inputs: sparse members, manifests that do not add up or end in a newline, counts
beyond the bounds, deeply nested JSON, extraction into a directory holding files the bundle does not list, and
a destination too small. Each is one line and exit 2, and nothing is extracted."""

import copy
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from blkfleet.bundle import manifest as mf
from blkfleet.bundle import pack
from blkfleet.cli import main
from helpers.bundles import members, write_tar


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, capsys.readouterr().err


def refused(capsys, bundle, tmp_path, message):
    """verify and extract both refuse with one line holding ``message``; nothing is extracted."""
    code, err = run(capsys, "bundle", "verify", bundle)
    assert code == 2 and err.count("\n") == 1 and err.startswith("blkfleet: ") and message in err, err
    dest = tmp_path / "dest"
    code, err = run(capsys, "bundle", "extract", bundle, dest)
    assert code == 2 and message in err, err
    assert not dest.exists() or os.listdir(dest) == []
    return err


def with_manifest(bundle_file, tmp_path, change, rehash=True, name="b.bundle"):
    """The bundle with its manifest changed by ``change(m)`` (and its id recomputed)."""
    entries = members(bundle_file)
    m = json.loads(entries[0][1])
    change(m)
    if rehash:
        m["bundle_id"] = mf.bundle_id(m)
    entries[0] = (entries[0][0], mf.encode(m))
    return write_tar(tmp_path / name, entries)


# ------------------------------------------------------------------------------------------------ sparse

def gnu_tar_bundle(bundle_file, tmp_path, grow_to):
    """The reproduction: GNU tar --sparse (PAX format, GNU sparse 1.0) of a bundle whose first replay file is
    padded with a hole to ``grow_to`` bytes, its manifest listing that size and sha256 (consistently)."""
    src = tmp_path / "src"
    (src / "replay").mkdir(parents=True)
    entries = members(bundle_file)
    for info, data in entries[1:]:
        (src / info.name).write_bytes(data)
    victim = src / "replay" / "loop1.replay.0"
    with open(victim, "r+b") as f:
        f.truncate(grow_to)  # a hole: GNU tar stores only the data
    m = json.loads(entries[0][1])
    digest, size = mf.sha256_file(str(victim))
    m["files"][0].update(size=size, sha256=digest)
    m["totals"]["size"] = sum(f["size"] for f in m["files"])
    m["bundle_id"] = mf.bundle_id(m)
    (src / "manifest.json").write_bytes(mf.encode(m))
    out = tmp_path / "sparse.bundle"
    subprocess.run(["tar", "--format=pax", "--sparse", "-cf", str(out), "-C", str(src), "manifest.json",
                    "engine.pyz", "replay/loop1.replay.0", "replay/loop1.replay.1"], check=True)
    return out


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar")
def test_sparse_member_is_refused(bundle_file, tmp_path, capsys):
    bad = gnu_tar_bundle(bundle_file, tmp_path, 64 << 20)
    assert bad.stat().st_size < 8 << 20  # the archive (engine included) stays small; the member would extract to 64 MiB
    with tarfile.open(bad) as tar:
        assert tar.getmember("replay/loop1.replay.0").sparse is not None
    err = refused(capsys, bad, tmp_path, "member 'replay/loop1.replay.0' is a sparse file")
    assert "refused" in err


def test_gnu_sparse_pax_keyword_is_refused(bundle_file, tmp_path, capsys):
    """A PAX header with a GNU.sparse keyword on a member, even one Python reads as a plain file."""
    entries = members(bundle_file)
    info, data = entries[2]
    info = copy.copy(info)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "1"}
    entries[2] = (info, data)
    refused(capsys, write_tar(tmp_path / "b", entries), tmp_path, "is a sparse file")


# ---------------------------------------------------------------------------------- trailing newline

@pytest.mark.parametrize("path, value", [
    (("devices", 0, "dev"), "7:1\n"),
    (("files", 0, "dev"), "7:1\n"),
    (("devices", 0, "name"), "loop1\n"),
    (("replay", "base"), "replay\n"),
])
def test_trailing_newline_is_refused(bundle_file, tmp_path, capsys, path, value):
    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        if path == ("devices", 0, "name"):  # everywhere the name appears (paths cannot hold a newline)
            m["replay"]["devices"] = [value]
            for f in m["files"]:
                f["device"] = value

    err = refused(capsys, with_manifest(bundle_file, tmp_path, change), tmp_path, "invalid manifest")
    assert "does not match" in err


def test_checker_pattern_is_a_full_match():
    from blkfleet.bundle import schema as mini

    for bad in ("7:1\n", "x7:1", "7:1 "):
        with pytest.raises(mini.SchemaError):
            mini.validate(bad, {"type": "string", "pattern": "^[0-9]+:[0-9]+$"})
    with pytest.raises(ValueError, match="not anchored"):
        mini.validate("7:1", {"type": "string", "pattern": "[0-9]+:[0-9]+"})


# ------------------------------------------------------------------------------------------ consistency

def _files_moved(m):
    m["files"][0]["path"] = "replay/loop1.replay.7"


def _device_ios(m):
    m["devices"][0]["ios"] += 1


def _extra_replay_device(m):
    m["replay"]["devices"].append("loop2")


def _totals_ios(m):
    m["totals"]["ios"] += 1
    m["totals"]["ops"]["read"]["ios"] += 1


def _totals_files(m):
    m["totals"]["files"] = 1


def _totals_size(m):
    m["totals"]["size"] -= 1


def _file_ops(m):
    m["files"][0]["ops"]["write"]["ios"] += 5


def _cpus(m):
    m["devices"][0]["cpus"] = 3


def _unknown_device(m):
    m["files"][1]["device"] = "loop9"
    m["files"][1]["path"] = "replay/loop9.replay.1"


def _device_twice(m):
    m["devices"].append(copy.deepcopy(m["devices"][0]))
    m["replay"]["devices"].append("loop1")


def _dotdot_name(m):
    """A name the schema's pattern allows but the device name rules do not."""
    for f in m["files"]:
        f["device"] = "pts_.._.._tmp_x"
        f["path"] = f["path"].replace("loop1", "pts_.._.._tmp_x")
    m["devices"][0]["name"] = "pts_.._.._tmp_x"
    m["replay"]["devices"] = ["pts_.._.._tmp_x"]


def _window(m):
    m["capture_window"]["span_ns"] += 1


def _first_after_last(m):
    f = m["files"][0]
    f["first_ns"], f["last_ns"] = f["last_ns"], f["first_ns"]
    m["capture_window"].update(first_ns=f["last_ns"], last_ns=max(x["last_ns"] for x in m["files"]))


def _too_many_ios_for_the_size(m):
    for node in (m["files"][0], m["devices"][0], m["totals"]):
        node["ios"] += 10 ** 9
        node["ops"]["read"]["ios"] += 10 ** 9


def _version_2_without_capture(m):
    m["format_version"] = 2


def _record_format(m):
    m["record"]["format"] = "btrecord"


@pytest.mark.parametrize("change, message", [
    (_files_moved, "path 'replay/loop1.replay.7' is not replay/loop1.replay.0"),
    (_device_ios, "device loop1: its IOs, bytes or ops are not the sum of its files'"),
    (_extra_replay_device, "replay.devices ['loop1', 'loop2'] differ from the devices ['loop1']"),
    (_totals_ios, "totals.ios, bytes or ops are not the sum of the files'"),
    (_totals_files, "totals.files or totals.size"),
    (_totals_size, "totals.files or totals.size"),
    (_file_ops, "ios or bytes is not the sum of its ops"),
    (_cpus, "device loop1: 3 CPUs, but files for CPUs [0, 1]"),
    (_unknown_device, "device 'loop9' is not among the devices"),
    (_device_twice, "a device is listed twice"),
    (_dotdot_name, "'.' and '..' are not allowed between '_'"),
    (_window, "capture_window is not the files' first and last IO times"),
    (_first_after_last, "first_ns is after last_ns"),
    (_too_many_ios_for_the_size, "IOs cannot fit in"),
    (_version_2_without_capture, "format version 2 without record.capture"),
    (_record_format, "record.format 'btrecord' is not what the files are"),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_manifest_must_add_up(bundle_file, tmp_path, capsys, change, message):
    err = refused(capsys, with_manifest(bundle_file, tmp_path, change), tmp_path, "invalid manifest")
    assert message in err, err
    code, err = run(capsys, "bundle", "info", tmp_path / "b.bundle")
    assert code == 2 and message in err


# ------------------------------------------------------------------------------------------------ bounds

def _many_cpus(m):
    m["devices"][0]["cpus"] = 10 ** 6


def _huge_count(m):
    m["files"][0]["ios"] = 10 ** 29


def _huge_size(m):
    m["files"][0]["size"] = 1 << 40


def _huge_dev(m):
    m["devices"][0]["dev"] = "99999999999:1"


def _many_files(m):
    m["files"] = m["files"] * 9000


def _huge_engine(m):
    m["engine"]["size"] = 1 << 30


def _replay_total(m):
    """Every file within its own bound, together beyond the 64 GiB of all replay files."""
    f = m["files"][1]
    for cpu in range(2, 6):
        extra = dict(copy.deepcopy(f), cpu=cpu, path=f"replay/loop1.replay.{cpu}", size=60 << 30, ios=0,
                     bytes=0, first_ns=None, last_ns=None)
        extra["ops"] = {k: {"ios": 0, "bytes": 0} for k in f["ops"]}
        m["files"].append(extra)
    m["devices"][0]["cpus"] = 6
    m["totals"].update(files=6, size=sum(x["size"] for x in m["files"]))


@pytest.mark.parametrize("change, message", [
    (_many_cpus, "is more than 8192"),
    (_huge_count, "is more than 9223372036854775807"),
    (_huge_size, "is more than 68719476736"),
    (_huge_dev, "does not match"),
    (_many_files, "more than 16384"),
    (_huge_engine, "is more than 67108864"),
    (_replay_total, "more than 68719476736 (64 GiB)"),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_upper_bounds(bundle_file, tmp_path, capsys, change, message):
    err = refused(capsys, with_manifest(bundle_file, tmp_path, change), tmp_path, "invalid manifest")
    assert message in err, err


# ------------------------------------------------------------------------------------------ deep nesting

def test_deeply_nested_manifest(bundle_file, tmp_path, capsys):
    entries = members(bundle_file)
    entries[0] = (entries[0][0], b"[" * 200_000 + b"]" * 200_000)
    refused(capsys, write_tar(tmp_path / "b", entries), tmp_path, "manifest.json is nested too deeply")


def test_deeply_nested_record_options(bundle_file, tmp_path, capsys):
    """Nesting deep enough to break json.dumps of the canonical manifest is refused by the schema first."""
    nested = {}
    node = nested
    for _ in range(900):
        node["x"] = {}
        node = node["x"]

    def change(m):
        m["record"]["options"] = nested
        m["bundle_id"] = "0" * 64

    refused(capsys, with_manifest(bundle_file, tmp_path, change, rehash=False), tmp_path, "invalid manifest")


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_capture_json(native_dir, tmp_path, capsys):
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "capture.json").write_text(DEEP)
    code, err = run(capsys, "bundle", "create", "-d", native_dir, "-o", tmp_path / "b", "--trace-dir", trace, "loop1")
    assert code == 2 and err.count("\n") == 1 and "nested too deeply" in err and "capture.json" in err, err


@pytest.mark.parametrize("content, message", [
    (DEEP, "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8"),
    ('{"files": [{"output": "loop1.replay.0", "ios": 1955, "ops": [1, 2]}]}', "$.files[0].ops: [1, 2] is not of "
                                                                             "type object"),
    ('{"files": [{"output": "loop1.replay.0", "ios": 1955, "ops": {"read": 7}}]}', "ops.read: 7 is not of type"),
    ('{"files": [{"output": 5, "ios": 1, "ops": {}}]}', "$.files[0].output: 5 is not of type string"),
    ('{"files": ["x"]}', "$.files[0]: \"x\" is not of type object"),
    ('{"files": [], "capture": {"complete": "yes"}}', "capture"),
    ('{"files": [], "options": {"a": {"b": 1}}}', "$.options.a"),
], ids=["deep", "utf8", "ops-list", "op-int", "output-int", "file-str", "capture", "options-nested"])
def test_bad_record_json(native_dir, tmp_path, capsys, content, message):
    rec = tmp_path / "rec.json"
    rec.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = run(capsys, "bundle", "create", "-d", native_dir, "-o", tmp_path / "b", "--record-json", rec, "loop1")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert str(rec) in err


@pytest.mark.parametrize("doc, message", [
    ({"host": {"a": 1}}, "invalid host: not a string"),
    ({"host": "a\nb"}, "invalid host: must be 1 to 255 printable characters"),
    ({"block_devices": {"loop1": {"size": 10 ** 29}}}, f"loop1 size {10 ** 29} is not a positive integer"),
    ({"block_devices": {"loop1": {"size": [1] * 100}}}, "loop1 size given is not a positive integer"),
    ({"block_devices": {"loop1": {"logical_block_size": 1 << 40}}}, "logical block size 1099511627776 is not a"),
    ({"block_devices": {"loop1": {"dev": 1 << 40}}}, None),  # an impossible dev_t is left out, not invented
])
def test_trace_dir_values(native_dir, tmp_path, capsys, doc, message):
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "capture.json").write_text(json.dumps(doc))
    code, err = run(capsys, "bundle", "create", "-d", native_dir, "-o", tmp_path / "b", "--trace-dir", trace, "loop1")
    if message is None:
        assert code == 0, err
        assert pack.read_manifest(str(tmp_path / "b"))["devices"][0]["dev"] == "7:1"  # from the replay files
    else:
        assert code == 2 and err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------------------------- extraction target

def test_extract_refuses_files_the_bundle_does_not_list(bundle_file, tmp_path, capsys):
    """The reproduction: an extraction of this very bundle, plus an extra replay file full of writes, which
    ``replay -d DIR/replay -F`` would replay. A second extract used to succeed and leave it there."""
    dest = tmp_path / "x"
    assert main(["bundle", "extract", str(bundle_file), str(dest)]) == 0
    capsys.readouterr()
    extra = dest / "replay" / "loop1.replay.2"
    shutil.copyfile(dest / "replay" / "loop1.replay.0", extra)
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and err.count("\n") == 1, err
    assert "holds 'replay/loop1.replay.2', which bundle" in err and "does not list" in err and "refused" in err
    assert extra.exists()  # refused, never deleted
    extra.unlink()
    (dest / "notes.txt").write_text("mine")
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and "holds 'notes.txt'" in err
    (dest / "notes.txt").unlink()
    assert main(["bundle", "extract", str(bundle_file), str(dest)]) == 0  # as extracted: still idempotent


def test_extract_reads_the_old_manifest_safely(bundle_file, tmp_path, capsys):
    dest = tmp_path / "x"
    dest.mkdir()
    (dest / "manifest.json").write_text(DEEP)
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and "not an extraction of this bundle" in err
    os.unlink(dest / "manifest.json")
    (dest / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_bytes(members(bundle_file)[0][1])
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and "not an extraction of this bundle" in err


def test_extract_refuses_a_directory_others_can_write(bundle_file, tmp_path, capsys):
    dest = tmp_path / "open"
    dest.mkdir()
    dest.chmod(0o777)
    code, err = run(capsys, "bundle", "extract", bundle_file, dest)
    assert code == 2 and "others can write to it" in err and os.listdir(dest) == []


@pytest.mark.root
def test_extract_refuses_when_the_destination_is_too_small(bundle_file, tmp_path, capsys):
    """A real 256 KiB tmpfs: the bundle's 480 kB do not fit, so nothing is written (no ENOSPC half-way)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        need = pack.extracted_bytes(pack.read_manifest(str(bundle_file)))
        assert need > 256 << 10
        code, err = run(capsys, "bundle", "extract", bundle_file, mnt / "d")
        assert code == 2 and err.count("\n") == 1 and f"the bundle needs {need} bytes" in err, err
        assert os.listdir(mnt / "d") == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)

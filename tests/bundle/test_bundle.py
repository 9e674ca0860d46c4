"""Bundles: create/info/verify/extract round trip, determinism, manifest content, the CLI."""

import hashlib
import json
import os
import shutil
import tarfile

import pytest

from blkfleet.bundle import manifest as mf
from blkfleet.bundle import pack
from blkfleet.cli import main
from helpers import DATA
from helpers.bundles import manifest_of, members, record


def test_round_trip_cli(tmp_path, native_dir, capsys):
    out = tmp_path / "b.bundle"
    rec = native_dir.parent / "rec.json"
    assert main(["bundle", "create", "-d", str(native_dir), "-o", str(out), "--trace-dir", str(DATA / "randmix"),
                 "--record-json", str(rec), "--source-host", "src1", "loop1"]) == 0
    bundle_id = capsys.readouterr().out.strip()
    assert len(bundle_id) == 64

    assert main(["bundle", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bundle_id"] == bundle_id == mf.bundle_id(info)

    assert main(["bundle", "verify", str(out), "--json", "-"]) == 0
    verified = json.loads(capsys.readouterr().out)["result"]
    assert verified == {"ok": True, "bundle_id": bundle_id, "files": 2, "ios": 2000, "bytes": 8192000,
                        "engine_sha256": info["engine"]["sha256"]}

    dest = tmp_path / "x"
    assert main(["bundle", "extract", str(out), str(dest), "--json", "-"]) == 0
    extracted = json.loads(capsys.readouterr().out)["result"]
    assert extracted["replay_dir"] == str(dest / "replay") and extracted["devices"] == ["loop1"]
    assert sorted(os.listdir(dest)) == ["engine.pyz", "manifest.json", "replay"]
    for entry in info["files"]:
        name = entry["path"].split("/")[1]
        assert (dest / "replay" / name).read_bytes() == (native_dir / name).read_bytes()
    assert hashlib.sha256((dest / "engine.pyz").read_bytes()).hexdigest() == info["engine"]["sha256"]
    assert os.stat(dest / "engine.pyz").st_mode & 0o777 == 0o755
    assert json.loads((dest / "manifest.json").read_text()) == info
    # extracting again into the same place is fine (idempotent); elsewhere non-empty is refused
    assert main(["bundle", "extract", str(out), str(dest)]) == 0
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other").write_text("x")
    assert main(["bundle", "extract", str(out), str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_manifest_content(bundle_file, native_dir):
    m = manifest_of(bundle_file)
    assert m["format"] == "blkfleet-bundle" and m["format_version"] == 1
    assert m["source_host"] == "src1"
    (dev,) = m["devices"]
    assert dev["name"] == "loop1" and dev["dev"] == "7:1"
    assert dev["size"] == 134217728 and dev["logical_block_size"] == 512  # from capture.json
    assert dev["cpus"] == 2 and dev["ios"] == 2000 and dev["bytes"] == 8192000
    assert dev["ops"]["read"]["ios"] + dev["ops"]["write"]["ios"] == 2000
    assert m["record"] == {"format": "native", "max_pkts": 64, "summary": True, "options": None,
                           "sources": ["loop1.blktrace.0", "loop1.blktrace.1"]}
    assert m["replay"] == {"directory": "replay", "base": "replay", "devices": ["loop1"]}
    assert [f["path"] for f in m["files"]] == ["replay/loop1.replay.0", "replay/loop1.replay.1"]
    rec = json.loads((native_dir.parent / "rec.json").read_text())["files"]
    for entry, said in zip(m["files"], rec):
        data = (native_dir / entry["path"].split("/")[1]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        assert entry["ios"] == said["ios"]
        assert (entry["first_ns"], entry["last_ns"]) == (said["first_time_ns"], said["last_time_ns"])
        assert {k: v for k, v in entry["ops"].items() if v["ios"]} == said["ops"]
    w = m["capture_window"]
    assert w["first_ns"] == min(f["first_ns"] for f in m["files"])
    assert w["last_ns"] == max(f["last_ns"] for f in m["files"])
    assert w["span_ns"] == w["last_ns"] - w["first_ns"] > 0
    assert m["totals"]["ios"] == 2000 and m["totals"]["files"] == 2
    assert m["totals"]["size"] == sum(f["size"] for f in m["files"])
    # no controller paths and no creation time in a content-addressed manifest
    assert str(native_dir) not in json.dumps(m) and "/" not in "".join(m["record"]["sources"])


def test_layout(bundle_file):
    got = members(bundle_file)
    assert [m.name for m, _ in got] == ["manifest.json", "engine.pyz", "replay/loop1.replay.0",
                                        "replay/loop1.replay.1"]
    for info, _ in got:
        assert info.isreg() and info.mtime == 0 and info.uid == info.gid == 0 and info.uname == info.gname == ""
        assert info.mode == (0o755 if info.name == "engine.pyz" else 0o644)
    assert got[0][1] == mf.encode(json.loads(got[0][1]))


def test_deterministic(tmp_path, native_dir, engine):
    """Same content in another directory, with other mtimes, gives the same bytes; the id is the content."""
    other = tmp_path / "elsewhere"
    shutil.copytree(native_dir, other)
    for p in other.iterdir():
        os.utime(p, (12345, 12345))
    a, b = tmp_path / "a.bundle", tmp_path / "b.bundle"
    ma = pack.create(str(a), str(native_dir), ("loop1",), trace_dir=str(DATA / "randmix"), engine=engine)
    mb = pack.create(str(b), str(other), (), find=True, trace_dir=str(DATA / "randmix"), engine=engine)
    assert a.read_bytes() == b.read_bytes()
    assert ma == mb and ma["bundle_id"] == hashlib.sha256(mf.canonical(
        {k: v for k, v in ma.items() if k != "bundle_id"})).hexdigest()
    # a different source host is different content: another id
    c = tmp_path / "c.bundle"
    assert pack.create(str(c), str(other), ("loop1",), source_host="h2", engine=engine)["bundle_id"] != ma["bundle_id"]


def test_btrecord_files(tmp_path, engine):
    src = record(DATA / "fs", tmp_path / "compat", "--compat")
    out = tmp_path / "c.bundle"
    m = pack.create(str(out), str(src), ("loop1",), trace_dir=str(DATA / "fs"), engine=engine)
    assert {f["format"] for f in m["files"]} == {"btrecord"}
    assert m["record"]["format"] == "btrecord" and m["record"]["max_pkts"] is None
    assert m["devices"][0]["dev"] == "7:1"  # btrecord files have no dev_t: taken from the traces
    assert m["totals"]["ops"]["discard"]["ios"] == 0  # btrecord turns discards into writes
    assert pack.verify(str(out)) == m


def test_several_devices_and_mixed_formats(tmp_path, native_dir, engine):
    d = tmp_path / "r"
    shutil.copytree(native_dir, d)
    compat = record(DATA / "multicpu", tmp_path / "compat", "--compat")
    for p in compat.iterdir():
        shutil.copyfile(p, d / p.name.replace("loop1", "loop2"))
    m = pack.create(str(tmp_path / "b"), str(d), (), find=True, engine=engine)
    assert [x["name"] for x in m["devices"]] == ["loop1", "loop2"]
    assert m["devices"][1]["dev"] is None  # btrecord file, no trace dir
    assert m["record"]["format"] == "mixed" and m["record"]["max_pkts"] is None
    assert m["replay"]["devices"] == ["loop1", "loop2"]


def test_capture_json_gives_block_size_and_host(tmp_path, native_dir, engine):
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "capture.json").write_text(json.dumps({
        "host": "db7", "block_devices": {"loop1": {"dev": "7:1", "size": 1 << 30, "logical_block_size": 4096}}}))
    m = pack.create(str(tmp_path / "b"), str(native_dir), ("loop1",), trace_dir=str(trace), engine=engine)
    assert m["source_host"] == "db7"
    assert m["devices"][0] | {"ops": None} == {
        "name": "loop1", "dev": "7:1", "size": 1 << 30, "logical_block_size": 4096, "cpus": 2, "ios": 2000,
        "bytes": 8192000, "ops": None}


@pytest.mark.parametrize("args, message", [
    (["-d", "{missing}", "loop1"], "argument -d/--input-directory: no such directory"),
    (["-d", "{native}"], "no device given"),
    (["-d", "{native}", "sdz"], "no sdz.replay.N files"),
    (["-d", "{native}", "-i", "../x", "loop1"], "invalid input base"),
    (["-d", "{native}", "--trace-dir", "{missing}", "loop1"], "argument --trace-dir: no such directory"),
    (["-d", "{native}", "--record-json", "{badrec}", "loop1"], "the record summary says 1999"),
    (["-d", "{native}", "--record-json", "{data}/randmix/meta.json", "loop1"], "no \"files\" list"),
], ids=["no-dir", "no-dev", "unknown-dev", "bad-base", "no-trace-dir", "record-mismatch", "not-a-summary"])
def test_create_errors(tmp_path, native_dir, capsys, args, message):
    rec = json.loads((native_dir.parent / "rec.json").read_text())
    rec["files"][0]["ios"] = 1999
    (tmp_path / "rec.json").write_text(json.dumps(rec))
    subst = {"missing": tmp_path / "nope", "native": native_dir, "badrec": tmp_path / "rec.json", "data": DATA}
    out = tmp_path / "out.bundle"
    argv = ["bundle", "create", "-o", str(out)] + [a.format(**subst) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_create_detects_a_file_changing(tmp_path, native_dir, engine, monkeypatch):
    d = tmp_path / "r"
    shutil.copytree(native_dir, d)
    real = mf.build

    def build_then_change(*a, **kw):
        result = real(*a, **kw)
        with open(d / "loop1.replay.1", "r+b") as f:
            f.seek(100)
            f.write(b"\xff")
        return result

    monkeypatch.setattr(mf, "build", build_then_change)
    with pytest.raises(Exception, match="changed while bundling"):
        pack.create(str(tmp_path / "b"), str(d), ("loop1",), engine=engine)
    assert not (tmp_path / "b").exists()


def test_info_reads_only_the_manifest(bundle_file, tmp_path):
    """info works on a bundle whose replay members are damaged; verify does not."""
    bad = tmp_path / "bad"
    data = bytearray(bundle_file.read_bytes())
    with tarfile.open(bundle_file) as tar:
        offset = tar.getmember("replay/loop1.replay.1").offset_data
    data[offset + 200] ^= 1
    bad.write_bytes(bytes(data))
    assert pack.read_manifest(str(bad)) == manifest_of(bundle_file)
    with pytest.raises(Exception, match="sha256 mismatch"):
        pack.verify(str(bad))


def test_capture_stop_state_file(tmp_path, native_dir, engine):
    """The capture.json of an older 'blkfleet capture' (no block_devices): host, and dev from summary.devices;
    other files of the directory (a test fixture's meta.json) are not read."""
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "capture.json").write_text(json.dumps({
        "host": "src9", "devices": ["loop1"], "state": "stopped",
        "summary": {"devices": {"loop1": {"dev": "7,1", "files": {}, "queued": 2000}}}}))
    (trace / "meta.json").write_text(json.dumps({"device": "loop1", "disk_size": 4096 * 1000, "host": "ignored"}))
    m = pack.create(str(tmp_path / "b"), str(native_dir), ("loop1",), trace_dir=str(trace), engine=engine)
    assert m["source_host"] == "src9"
    assert (m["devices"][0]["dev"], m["devices"][0]["size"]) == ("7:1", None)
    (trace / "capture.json").write_text(json.dumps({"block_devices": {"loop1": {"logical_block_size": "4k"}}}))
    with pytest.raises(Exception, match="loop1 logical block size '4k' is not a positive integer"):
        pack.create(str(tmp_path / "c"), str(native_dir), ("loop1",), trace_dir=str(trace), engine=engine)

"""The replay engine on real loop devices: what the kernel received (traced with ftrace) matches the
results, btrecord's files replay completely, the C btreplay replays our --compat files, and the safety
checks, error paths and signals behave."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import iter_ios, open_replay
from blkfleet.replayfile.ops import READ, WRITE
from helpers import DATA, ENV
from helpers.replay import map_file, record, replay, slow_trace, validate
from helpers.tracing import queued_extents, traced

pytestmark = pytest.mark.root


@pytest.mark.parametrize("backend", ["aio", "uring", "sync"])
def test_replay_reaches_the_kernel(tmp_path, loopdev, tracer, backend):
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    res = tmp_path / "res.json"
    with traced([target], tmp_path / "seen", tracer) as seen:
        code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "--ioengine", backend, "--json", res,
                                "loop1")
    assert code == 0, err
    validate(doc)
    assert doc["ioengine"] == backend
    assert doc["total"]["ios"] == 2000 == seen.queued(target)
    planned = Counter()
    for path in find_per_cpu(src, "loop1", "replay"):
        with open_replay(path) as r:
            planned.update((sector, nbytes) for _t, sector, nbytes, _op, _f in iter_ios(r))
    assert queued_extents(tmp_path / "seen", target) == planned  # every IO exactly once, as recorded
    assert doc["total"]["errors"]["count"] == 0
    assert doc["writes_replayed_as_reads"] and set(doc["total"]["by_op"]) == {"read"}
    assert doc["devices"]["loop1"]["target"] == target


def test_writes_discards_flushes_with_W(tmp_path, loopdev, tracer):
    src = record(tmp_path, "fs")
    target = loopdev(128 << 20)
    res = tmp_path / "res.json"
    with traced([target], tmp_path / "seen", tracer) as seen:
        code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--json", res, "loop1")
    assert code == 0, err
    validate(doc)
    ops = doc["total"]["by_op"]
    assert ops["discard"]["ios"] > 0 and ops["flush"]["ios"] > 0 and ops["write"]["ios"] > 0
    assert doc["total"]["ios"] == 423
    assert seen.queued(target) >= 423  # a discard may be split by the kernel into several bios


def test_btrecord_files_replay_completely(tmp_path, loopdev):
    btrecord = shutil.which("btrecord") or "/usr/sbin/btrecord"
    src = tmp_path / "c"
    src.mkdir()
    subprocess.run([btrecord, "-d", str(DATA / "fs"), "-D", str(src), "loop1"], check=True)
    total = 0
    for path in find_per_cpu(src, "loop1", "replay"):
        with open_replay(path) as r:
            total += sum(len(p) for _t, p in r.bunches())
    target = loopdev(128 << 20)
    res = tmp_path / "res.json"
    code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "--json", res, "loop1")
    assert code == 0, err
    assert doc["formats"] == ["btrecord"]
    assert doc["total"]["ios"] == total == 423  # including the single-bunch file btreplay would skip


def test_c_btreplay_replays_our_compat_files(tmp_path, loopdev, tracer):
    src = record(tmp_path, "multicpu", compat=True)
    target = loopdev(128 << 20)
    name = os.path.basename(target)
    for path in find_per_cpu(src, "loop1", "replay"):
        os.rename(path, path.replace("loop1.", f"{name}."))
    btreplay = shutil.which("btreplay") or "/usr/sbin/btreplay"
    with traced([target], tmp_path / "seen", tracer) as seen:
        proc = subprocess.Popen([btreplay, "-d", str(src), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # btreplay 1.2 can hang at exit after replaying everything
            proc.kill()
            proc.wait()
    assert seen.queued(target) == 1200


@pytest.mark.parametrize("probe,says", [("auto", "TYPE=ext4"), ("internal", "ext2/3/4")])
def test_refuses_to_write_over_a_filesystem(tmp_path, loopdev, probe, says):
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", target], check=True)
    code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--probe", probe, "loop1")
    assert code == 2
    assert err.count("\n") == 1 and "refusing to write" in err and says in err and "Traceback" not in err
    code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--force", "loop1")
    assert code == 0, err


def test_read_only_target_with_W_counts_errors(tmp_path):
    src = record(tmp_path, "randmix")
    image = tmp_path / "ro.img"
    with open(image, "wb") as f:
        f.truncate(128 << 20)
    target = subprocess.run(["losetup", "--show", "-f", "-r", str(image)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        res = tmp_path / "res.json"
        started = time.monotonic()
        code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--json", res, "loop1",
                                timeout=60)
        assert time.monotonic() - started < 30
    finally:
        subprocess.run(["losetup", "-d", target])
    assert code == 3, err
    writes = doc["total"]["by_op"]["write"]["ios"]
    assert writes > 0 and doc["total"]["errors"]["count"] == writes
    assert "Operation not permitted" in doc["total"]["errors"]["first"]


def test_ios_beyond_the_target_are_refused(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    target = loopdev(8 << 20)
    code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "loop1")
    assert code == 2 and "do not fit" in err and err.count("\n") == 1


@pytest.mark.parametrize("content,problem", [
    ("loop1\n", "expected 'FROM TO'"),
    ("loop1 nosuchdevice_xyz\n", "No such file"),
    (None, "cannot read device map"),
])
def test_bad_maps(tmp_path, content, problem):
    src = record(tmp_path, "randmix")
    path = tmp_path / "map"
    if content is not None:
        path.write_text(content)
    code, _doc, err = replay("-d", src, "-M", path, "loop1")
    assert code == 2 and problem in err and err.count("\n") == 1


def test_sigint_stops_within_a_second_with_partial_results(tmp_path, loopdev):
    slow_trace(tmp_path)
    target = loopdev(64 << 20)
    res = tmp_path / "res.json"
    proc = subprocess.Popen([sys.executable, "-m", "blkfleet", "replay", "-d", str(tmp_path), "-M",
                             str(map_file(tmp_path, target)), "--json", str(res), "loop1"], env=ENV,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 1.5
    assert proc.returncode == 130, proc.stderr.read()
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["interrupted"] and 0 < doc["total"]["ios"] < 2000


def test_acceleration_iterations_and_no_stall(tmp_path, loopdev):
    slow_trace(tmp_path, seconds=1.0, ios=1000)
    target = loopdev(64 << 20)
    res = tmp_path / "res.json"
    started = time.monotonic()
    code, doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, target), "-x", "2.5", "-I", "2",
                            "--json", res, "loop1")
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert doc["total"]["ios"] == 2000 and len(doc["per_iteration"]) == 2
    assert all(0.35 < it["duration_s"] < 0.6 for it in doc["per_iteration"])  # 1 s / 2.5 = 0.4 s each
    assert elapsed < 5
    code, doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, target), "-N", "--json", res, "loop1")
    assert code == 0 and doc["mode"] == "no-stall" and doc["total"]["duration_s"] < 0.5


def test_write_op_constant_matches_format():
    assert (READ, WRITE) == (0, 1)


def test_replay_from_a_bundle(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    bundle = tmp_path / "b.tar"
    assert main(["bundle", "create", "-d", str(src), "-o", str(bundle), "loop1"]) == 0
    target = loopdev(128 << 20)
    res = tmp_path / "res.json"
    code, doc, err = replay("--bundle", bundle, "-M", map_file(tmp_path, target), "--json", res)
    assert code == 0, err
    validate(doc)
    assert doc["total"]["ios"] == 2000 and doc["input"] == str(bundle) and len(doc["bundle_id"]) == 64


def test_bad_bundles_give_one_line(tmp_path):
    src = record(tmp_path, "randmix")
    bundle = tmp_path / "b.tar"
    assert main(["bundle", "create", "-d", str(src), "-o", str(bundle), "loop1"]) == 0
    data = bytearray(bundle.read_bytes())
    data[-2048] ^= 0xFF  # inside the last replay file's data, or its padding
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data[: len(data) // 2]))
    for path in (bad, tmp_path / "missing.tar"):
        code, _doc, err = replay("--bundle", path, "-M", map_file(tmp_path, "/dev/loop0"))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err

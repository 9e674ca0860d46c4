"""``--mode load`` and ``--mode dependency`` on real captures: fio on one loop device captured with completions,
recorded (version 2), replayed onto another loop device with -W while that one is captured too. The replay's own
capture shows what the kernel got: dependent IOs never start before their parents completed, conflicting IOs keep
their order, load mode never has more IOs in flight than were recorded. Version 1 files still replay (timed), and
the modes refuse them with one line; the modes write only with -W."""

import os
import subprocess
from collections import Counter

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import open_replay
from blkfleet.replayfile.ops import DISCARD, READ, WRITE
from blkfleet.trace.actions import C_DISCARD, C_WRITE, is_complete, is_queue
from blkfleet.trace.matching import Matcher
from blkfleet.trace.reader import TraceReader
from helpers import DATA
from helpers.replay import map_file, replay, validate
from helpers.tracing import traced


def workload(dev):
    """Three jobs: 400 reads and writes of 4-32 KiB at depth 8 on 128 KiB (conflicts, think 50 us), and two
    synchronous ones of 200 IOs with 200 us think time elsewhere (independent streams)."""
    subprocess.run(["fio", f"--filename={dev}", "--direct=1", "--randrepeat=0", "--norandommap",
                    "--output-format=terse",
                    "--name=async", "--rw=randrw", "--bsrange=4k-32k", "--ioengine=libaio", "--iodepth=8",
                    "--size=128k", "--number_ios=400", "--io_size=100m", "--thinktime=50",
                    "--name=sync", "--rw=randrw", "--bs=4k", "--ioengine=psync", "--offset=1m", "--size=8m",
                    "--number_ios=200", "--thinktime=200", "--numjobs=2"], check=True, capture_output=True)


@pytest.fixture
def recorded(tracer, loopdev, tmp_path):
    """(replay dir, recorded device name, {seq: IO}) of the workload's capture."""
    src = loopdev()
    cap = tmp_path / "cap"
    cap.mkdir()
    with traced([src], cap, lock=tracer, mode="events"):
        workload(src)
    name = os.path.basename(src)
    rep = tmp_path / "rep"
    rep.mkdir()
    assert main(["record", "-q", "--timing", "-d", str(cap), "-D", str(rep), name]) == 0
    return rep, name, recorded_ios(rep, name)


def recorded_ios(rep, name):
    ios = recorded_ios_of(rep, name)
    assert len(ios) >= 700
    return ios


def recorded_ios_of(rep, name):
    """{seq: IO} of a version 2 replay dir, every seq from 0 on."""
    ios = {}
    for path in find_per_cpu(str(rep), name, "replay"):
        for chunk in open_replay(path, timing=True).chunks():
            t = chunk.timing
            for k, parents in enumerate(t.parents()):
                ios[t.seqs[k]] = {"time": chunk.times[k], "sector": chunk.sectors[k], "nbytes": chunk.nbytes[k],
                                  "op": chunk.ops[k], "latency": t.latencies[k], "inflight": t.inflight[k],
                                  "parents": parents}
    assert sorted(ios) == list(range(len(ios)))
    return ios


def replay_captured(tracer, target, tmp_path, rep, name, *options):
    """Replay onto ``target`` (-W) while it is captured: (results, [(Q time, sector, bytes, C time, in flight at
    the Q, writes, discards)] in Q order)."""
    out = tmp_path / "replay-cap"
    out.mkdir()
    res = tmp_path / "res.json"
    with traced([target], out, lock=tracer, mode="events"):
        code, doc, err = replay("-d", rep, "-M", map_file(tmp_path, target, name), "-W", "--json", res, *options,
                                name)
    assert code == 0, err
    rows = []
    for path in find_per_cpu(str(out), os.path.basename(target), "blktrace"):
        with TraceReader(path) as reader:
            rows += [(r.time, is_complete(r.action), r.sector, r.bytes, bool(r.action & C_WRITE),
                      bool(r.action & C_DISCARD)) for r in reader if is_queue(r.action) or is_complete(r.action)]
    rows.sort()
    matcher = Matcher(empty=True)
    qs = []
    for t, is_c, sector, nbytes, writes, discards in rows:
        if is_c:
            for k in matcher.completed(sector, nbytes):
                qs[k][3] = t
        else:
            qs.append([t, sector, nbytes, None, matcher.in_flight + 1, writes, discards])
            matcher.queued(sector, nbytes, len(qs) - 1)
    return doc, qs


def matched(ios, qs):
    """{seq: the replay's Q} for the dependency mode, which issues out of trace order: the replay's Qs (after the
    reads of the target's signature check) matched to the recorded IOs by extent and op, in order of occurrence.
    That is exact where IOs of one extent keep their order, as conflicting ones must; an extent read more than
    once is left out (its reads may come out either way)."""
    qs = qs[len(qs) - len(ios):]
    key = {seq: (io["sector"], io["nbytes"], io["op"] != READ) for seq, io in ios.items()}
    assert sorted(key.values()) == sorted((q[1], q[2], q[5]) for q in qs)
    assert all(q[3] is not None for q in qs)
    by_key = {}
    for q in qs:
        by_key.setdefault((q[1], q[2], q[5]), []).append(q)
    reads = Counter(k for k in key.values() if not k[2])
    out = {}
    for seq in sorted(ios):
        q = by_key[key[seq]].pop(0)
        if key[seq][2] or reads[key[seq]] == 1:
            out[seq] = q
    return out


def as_replayed(ios, qs):
    """The replay's Qs are the recorded IOs in recorded order, each completed (after the reads of the target's
    signature check, before the replay: left out)."""
    qs[:] = qs[len(qs) - len(ios):]
    assert [(io["sector"], io["nbytes"]) for _s, io in sorted(ios.items())] == [(q[1], q[2]) for q in qs]
    assert all(q[3] is not None for q in qs)


@pytest.mark.root
def test_dependency_mode_waits_for_parents_and_keeps_conflicts_in_order(tracer, loopdev, tmp_path, recorded):
    rep, name, ios = recorded
    doc, qs = replay_captured(tracer, loopdev(), tmp_path, rep, name, "--mode", "dependency")
    validate(doc)
    assert doc["mode"] == "dependency" and doc["total"]["ios"] == len(ios)
    q = matched(ios, qs)
    assert len(q) > 0.5 * len(ios)  # reads of an extent read more than once are ambiguous: left out
    waited = 0
    for seq, io in ios.items():
        for parent, after_issue in io["parents"]:
            if seq in q and parent in q:
                if after_issue:
                    assert q[parent][0] < q[seq][0], (parent, seq)  # its Q before this one's
                else:
                    assert q[parent][3] <= q[seq][0], (parent, seq)  # its C before this one's Q
                    waited += 1
    assert waited > len(ios)
    pairs = 0
    for b, io in ios.items():
        for a in range(b):
            other = ios[a]
            if (a in q and b in q and other["sector"] < io["sector"] + (io["nbytes"] >> 9)
                    and io["sector"] < other["sector"] + (other["nbytes"] >> 9)
                    and (io["op"] != READ or other["op"] != READ)):
                pairs += 1
                assert q[a][0] < q[b][0], (a, b)  # issued in order
                if other["time"] + other["latency"] <= io["time"]:  # completed before, when recorded
                    assert q[a][3] <= q[b][0], (a, b)
    assert pairs > 1000
    offsets = [w["think_offset_us"] for w in doc["workers"]]
    assert all(0 < o < 1000 for o in offsets), offsets


@pytest.mark.root
def test_dependency_mode_keeps_discards_and_writes_of_a_block_in_order(tracer, loopdev, tmp_path):
    """Discards go as ioctls, one at a time at the head of the worker's range: each 4 KiB block trimmed then written,
    twice over (fio trimwrite), keeps that order in a dependency replay, and every IO goes."""
    src = loopdev()
    cap = tmp_path / "cap"
    cap.mkdir()
    with traced([src], cap, lock=tracer, mode="events"):
        subprocess.run(["fio", "--name=trimwrite", f"--filename={src}", "--direct=1", "--ioengine=psync",
                        "--rw=trimwrite", "--bs=4k", "--size=192k", "--loops=2", "--output-format=terse"],
                       check=True, capture_output=True)
    name = os.path.basename(src)
    rep = tmp_path / "rep"
    rep.mkdir()
    assert main(["record", "-q", "--timing", "-d", str(cap), "-D", str(rep), name]) == 0
    ios = recorded_ios_of(rep, name)
    recorded = {}
    for _seq, io in sorted(ios.items()):
        recorded.setdefault(io["sector"], []).append(io["op"])
    assert sum(ops.count(DISCARD) for ops in recorded.values()) == 96 and len(recorded) == 48
    doc, qs = replay_captured(tracer, loopdev(), tmp_path, rep, name, "--mode", "dependency")
    assert doc["total"]["ios"] == len(ios) and doc["total"]["errors"]["count"] == 0, doc["total"]
    replayed = {}
    for _t, sector, nbytes, _c, _depth, writes, discards in qs[len(qs) - len(ios):]:
        if nbytes:
            replayed.setdefault(sector, []).append(DISCARD if discards else WRITE if writes else READ)
    assert replayed == recorded


@pytest.mark.root
def test_load_mode_never_exceeds_the_recorded_inflight(tracer, loopdev, tmp_path, recorded):
    rep, name, ios = recorded
    doc, qs = replay_captured(tracer, loopdev(), tmp_path, rep, name, "--mode", "load")
    validate(doc)
    as_replayed(ios, qs)
    for seq, io in ios.items():
        assert qs[seq][4] <= io["inflight"], seq
    depths = doc["inflight"][name]
    assert sum(depths["recorded"].values()) == sum(depths["replayed"].values()) == len(ios)
    assert max(map(int, depths["replayed"])) <= max(map(int, depths["recorded"]))
    assert max(map(int, depths["recorded"])) >= 2  # the jobs had IOs in flight together


@pytest.mark.root
def test_version_1_files_replay_timed_and_the_modes_refuse_them(loopdev, tmp_path):
    v1 = DATA / "replay-v1"
    target = loopdev(128 << 20)
    mapping = map_file(tmp_path, target)
    code, doc, err = replay("-d", v1, "-M", mapping, "--json", tmp_path / "r.json", "loop1")
    assert code == 0, err
    assert doc["total"]["ios"] == sum(open_replay(str(p)).io_count for p in v1.glob("loop1.replay.*"))
    for mode in ("load", "dependency"):
        code, _doc, err = replay("-d", v1, "-M", mapping, "--mode", mode, "loop1")
        assert code == 2 and err.count("\n") == 1 and "no recorded timing" in err, err


@pytest.mark.root
def test_the_modes_write_only_with_w_and_refuse_a_filesystem(loopdev, tmp_path, recorded):
    rep, name, ios = recorded
    target = loopdev()
    mapping = map_file(tmp_path, target, name)
    code, doc, err = replay("-d", rep, "-M", mapping, "--mode", "dependency", "-I", "2", "--json", tmp_path / "r.json",
                            name)
    assert code == 0, err
    assert doc["writes_replayed_as_reads"] and "write" not in doc["devices"][name]["by_op"]
    assert doc["total"]["ios"] == 2 * len(ios) and len(doc["per_iteration"]) == 2  # each iteration waits anew
    subprocess.run(["mkfs.ext4", "-q", "-F", target], check=True)
    code, _doc, err = replay("-d", rep, "-M", mapping, "--mode", "load", "-W", name)
    assert code == 2 and err.count("\n") == 1 and "refusing to write" in err, err


@pytest.mark.root
def test_a_replay_onto_a_faster_device_runs_ahead_of_the_recording(tracer, loopdev, tmp_path):
    """fio paced at 100 IOPS for 3 s: in load mode (no timing) the replay takes a fraction of that; the feeder
    used to fill the window only with IOs recorded up to 2 s ahead of the replay's clock, so it took 1 s or more."""
    src = loopdev()
    cap = tmp_path / "cap"
    cap.mkdir()
    with traced([src], cap, lock=tracer, mode="events"):
        subprocess.run(["fio", "--name=paced", f"--filename={src}", "--direct=1", "--bs=4k", "--rw=randread",
                        "--ioengine=psync", "--rate_iops=100", "--number_ios=300", "--size=16m",
                        "--output-format=terse"], check=True, capture_output=True)
    name = os.path.basename(src)
    rep = tmp_path / "rep"
    rep.mkdir()
    assert main(["record", "-q", "--timing", "-d", str(cap), "-D", str(rep), name]) == 0
    target = loopdev()
    code, doc, err = replay("-d", rep, "-M", map_file(tmp_path, target, name), "--mode", "load", "--json",
                            tmp_path / "r.json", name)
    assert code == 0, err
    assert doc["total"]["ios"] == 300 and doc["total"]["duration_s"] < 0.6, doc["total"]

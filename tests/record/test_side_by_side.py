"""``blkfleet record -j N``: trace files converted side by side, each in its own process, give what converting
them one after another gives: the same replay files, the same summary, and after a failure the same error and
the same output directory (files before it in place, btrecord's partial file in --compat, nothing after it)."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from blkfleet import codes, progress
from blkfleet.record import run, workers
from helpers import ENV
from helpers.replay import alive, children
from helpers.synth import (
    Q_READ,
    Q_WRITE,
    capture_state,
    encode,
    fails,
    offsets,
    rec,
    run_cli,
    typical_records,
    write_trace,
)

MODES = {"native": [], "compat": ["--compat"]}
DEVICES = ("sda", "sdb")
CPUS = 3


def capture(src):
    """Two devices of three per-CPU files each (one empty, as blktrace leaves an idle CPU's), of several sizes."""
    for d, dev in enumerate(DEVICES):
        for cpu in range(CPUS):
            n = (0, 40, 7)[cpu] + 5 * d
            write_trace(src / f"{dev}.blktrace.{cpu}", typical_records(n, start=10**9 + cpu, cpu=cpu) if n else [])


def listing(directory):
    """{name: bytes} of a directory (hidden files too: nothing may be left behind)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def convert(src, out, jobs, *extra):
    return run_cli("record", "-j", jobs, *extra, "--json", "-", "-d", src, "-D", out, *DEVICES)


def outcome(result, out):
    """What a run gave, with the output directory's name taken out of its messages and summary."""
    doc = json.loads(result.stdout) if result.stdout else None
    text = json.dumps(doc["result"] if doc and doc.get("result") else doc, sort_keys=True)
    return result.returncode, result.stderr.replace(str(out), "OUT"), text.replace(str(out), "OUT"), listing(out)


@pytest.fixture
def dirs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    capture(src)
    outs = {}
    for jobs in (1, 2, 6):
        outs[jobs] = tmp_path / f"out{jobs}"
        outs[jobs].mkdir()
    return src, outs


@pytest.mark.parametrize("mode", MODES)
def test_side_by_side_gives_the_files_and_summary_of_one_by_one(dirs, mode):
    src, outs = dirs
    got = {jobs: outcome(convert(src, out, jobs, *MODES[mode]), out) for jobs, out in outs.items()}
    code, err, summary, files = got[1]
    assert code == 0, err
    assert sorted(files) == [f"{dev}.replay.{cpu}" for dev in DEVICES for cpu in range(CPUS)]
    assert json.loads(summary)["files"][1]["ios"] == 40
    assert got[2] == got[1] and got[6] == got[1]


def corrupt(path, ios, how):
    """Break the trace file of CPU 1: a bad magic in its 7th record, or a Q before the first (native: time goes
    backwards; btrecord: time inversion before genesis)."""
    data = bytearray(path.read_bytes())
    recs = typical_records(ios, start=10**9 + 1, cpu=1)
    assert encode(recs) == data
    if how == "magic":
        struct.pack_into("<I", data, offsets(recs)[7], 0x12345678)
    else:
        recs.insert(30, rec(10**9 - 5, 4096, 4096, Q_WRITE, cpu=1))
        data = encode(recs)
    path.write_bytes(data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("how", ["magic", "backwards"])
def test_a_failure_leaves_what_one_by_one_leaves(dirs, mode, device, how):
    """The broken file is the second of the device (the other files of both devices convert); old replay files
    are in the output directory before the run."""
    src, outs = dirs
    corrupt(src / f"{device}.blktrace.1", 40 + 5 * DEVICES.index(device), how)
    for out in outs.values():
        for dev in DEVICES:
            for cpu in range(CPUS):
                (out / f"{dev}.replay.{cpu}").write_bytes(b"old " + f"{dev}.{cpu}".encode())
    got = {jobs: outcome(convert(src, out, jobs, *MODES[mode]), out) for jobs, out in outs.items()}
    code, err, _summary, files = got[1]
    fails(subprocess.CompletedProcess([], code, "", err), f"{device}.blktrace.1")
    assert files[f"{device}.replay.0"] != b"old " + f"{device}.0".encode()  # converted before the error
    assert files[f"{device}.replay.2"] == b"old " + f"{device}.2".encode()  # not reached
    assert got[2] == got[1] and got[6] == got[1]


@pytest.mark.parametrize("mode", MODES)
def test_a_file_that_differs_from_capture_json_fails_alike(dirs, mode):
    """capture.json is checked in file order as each file is put in place, also when converted side by side."""
    src, outs = dirs
    files = {}
    for dev in DEVICES:
        for cpu in range(CPUS):
            path = src / f"{dev}.blktrace.{cpu}"
            ios = (0, 40, 7)[cpu] + 5 * DEVICES.index(dev)
            files[path.name] = (ios, 4096 * ios, path.stat().st_size)
    files["sda.blktrace.2"] = (7, 4096 * 8, files["sda.blktrace.2"][2])  # the capture says more bytes
    (src / "capture.json").write_text(json.dumps(capture_state(files)))
    got = {jobs: outcome(convert(src, out, jobs, *MODES[mode]), out) for jobs, out in outs.items()}
    code, err, _summary, written = got[1]
    fails(subprocess.CompletedProcess([], code, "", err), "sda.blktrace.2", "capture.json")
    assert sorted(written) == ["sda.replay.0", "sda.replay.1"]
    assert got[2] == got[1] and got[6] == got[1]


def big_capture(src, ios=400_000):
    """Two large per-CPU files (bare Q records): long enough to interrupt a conversion."""
    step = 4096
    for cpu in range(2):
        records = (rec(10**9 + 1000 * i, 8 * i, step, Q_READ, cpu=cpu) for i in range(ios))
        write_trace(src / f"sda.blktrace.{cpu}", records)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_side_by_side_conversion_leaves_nothing_behind(tmp_path, sig):
    """SIGINT (^C: to the whole process group) or SIGTERM to blkfleet alone, while its workers write: every
    worker ends, and no replay file, nor a half-written one, is left in the output directory."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    big_capture(src)
    for _attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "blkfleet", "record", "-j", "2", "-d", str(src), "-D",
                                 str(out), "sda"], env=ENV, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.monotonic() + 30
        while not any(n.endswith(".tmp") for n in os.listdir(out)) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        workers = children(proc.pid)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        code = proc.wait(timeout=30)
        err = proc.stderr.read()
        if not workers:  # it finished before the signal: try again
            shutil.rmtree(out)
            out.mkdir()
            continue
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived blkfleet"
            time.sleep(0.01)
        assert os.listdir(out) == [], os.listdir(out)
        if sig == signal.SIGINT:
            assert code == codes.exit_code("interrupted") and err == "blkfleet: interrupted\n", (code, err)
        return
    pytest.fail("the conversion always ended before it could be stopped")


def test_one_job_converts_in_the_process_itself(dirs, monkeypatch):
    """-j 1 forks nothing (the conversion is the command's own); -j 0 is refused."""
    src, outs = dirs
    monkeypatch.setattr(workers, "_start", lambda call: pytest.fail("forked with one job"))
    summaries, _ = run.record(run.RecordOptions(input_dir=str(src), output_dir=str(outs[1]), devices=DEVICES,
                                                jobs=1))
    assert len(summaries) == len(DEVICES) * CPUS
    fails(run_cli("record", "-j", "0", "-d", src, "-D", outs[2], "sda"), "-j")


def test_the_progress_line_counts_what_the_workers_read(tmp_path):
    """``record``'s progress is the bytes read by the command's process and its children, running or ended."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 20) * 8)
    before = progress.bytes_read()
    child = subprocess.Popen([sys.executable, "-c", "import sys; open(sys.argv[1], 'rb').read(); print(flush=True); "
                              "sys.stdin.read()", str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"\n"  # it has read the file and waits
        running = progress.bytes_read() - before
    finally:
        child.communicate(b"", timeout=30)
    ended = progress.bytes_read() - before
    assert 8 << 20 <= running < 12 << 20 and 8 << 20 <= ended < 12 << 20, (running, ended)  # (and its start-up)

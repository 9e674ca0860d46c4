"""``blkfleet capture start|stop|status|restore`` end to end on real loop devices (root)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from blkfleet.capture import blktrace, control, state, tracefs
from blkfleet.errors import BlkfleetError
from blkfleet.process import process_start
from blkfleet.replayfile import iter_ios, open_replay
from helpers import ENV
from helpers.capture_cli import blkfleet, fio, json_out, need
from helpers.terminal import run_on_terminal

pytestmark = pytest.mark.root


class TracerView:
    """Every tracer setting a capture may change, plus whether our tracefs instance exists; two views are equal
    when the settings are, buffer sizes compared as the kernel rounds them (``TracerState.differences``)."""

    def __init__(self, dev):
        tracing = tracefs.find_tracefs()
        _, trace_dir = tracefs.device_trace_dir(dev)
        self.state = tracefs.TracerState.snapshot(tracing, [trace_dir])
        self.instance = os.path.exists(os.path.join(tracing, "instances", "blkfleet"))

    def __eq__(self, other):
        return not self.state.differences(other.state) and self.instance == other.instance

    def __repr__(self):
        return f"TracerView({self.state.to_json()}, instance={self.instance})"


tracer_view = TracerView


def start(dev_or_devs, out, *extra):
    devs = [dev_or_devs] if isinstance(dev_or_devs, str) else dev_or_devs
    args = ["capture", "start", "-D", out, *extra]
    for d in devs:
        args += ["-d", d]
    run = blkfleet(*args)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1  # one JSON line
    return json_out(run)


def stop(out, *extra, code=0):
    run = blkfleet("capture", "stop", "-D", out, *extra)
    assert run.returncode == code, run.stderr
    return json_out(run)


def test_24576_io_workload_fully_captured_and_read_by_blkparse_and_btrecord(loopdev, capture_dirs):
    need("fio")
    dev = loopdev(128 << 20)
    name = os.path.basename(dev)
    out = capture_dirs()
    doc = start(dev, out)
    assert doc["started"] is True and doc["state"] == "running" and doc["devices"] == [name]
    assert doc["requested_backend"] == "auto" and control.inspect(out).pid == doc["pid"]
    if doc["backend"] == "ftrace" and shutil.which("blktrace"):
        assert "blktrace" in doc["fallback_reason"]
    ios = fio("--name=r", f"--filename={dev}", rw="randread", iodepth=16, size="96M")[dev]
    assert ios == 24576
    summary = stop(out)
    assert summary["stopped"] is True and summary["error"] is None
    assert summary["queued"] == summary["devices"][name]["queued"] == 24576
    assert summary["bytes"] == 24576 * 4096
    assert summary["drops"] == 0 and summary["drop_reports"] == 0
    ncpu = len(summary["files"])
    assert summary["files"] == [f"{name}.blktrace.{c}" for c in range(ncpu)]
    assert all(os.path.exists(out / f) for f in summary["files"])
    assert sum(f["queued"] for f in summary["devices"][name]["files"].values()) == 24576
    if shutil.which("blkparse"):
        run = subprocess.run(["blkparse", "-i", name, "-D", str(out)], capture_output=True, text=True, check=True)
        assert sum(1 for line in run.stdout.splitlines() if line.split()[5:6] == ["Q"]) == 24576
        assert "Skips: 0 forward" in run.stdout
    if shutil.which("btrecord"):
        rec = out / "replay"
        rec.mkdir()
        subprocess.run(["btrecord", "-d", str(out), "-D", str(rec), name], check=True, capture_output=True)
        count = 0
        for f in sorted(os.listdir(rec)):
            with open_replay(rec / f) as r:
                count += sum(1 for _ in iter_ios(r))
        assert count == 24576


def test_two_devices_and_stop_after_the_starting_shell_is_gone(loopdev, capture_dirs):
    need("fio")
    a, b = loopdev(32 << 20), loopdev(32 << 20)
    out = capture_dirs()
    cmd = (f"{sys.executable} -m blkfleet capture start --backend ftrace -d {a} -d {b} -D {out} > {out}.start; "
           "exit 0")
    shell = subprocess.run(["sh", "-c", cmd], env=ENV, check=True, timeout=60)  # the shell is gone now
    with open(f"{out}.start") as f:
        doc = json.loads(f.read())
    pid = doc["pid"]
    assert shell.returncode == 0
    # A session of its own (double fork: not its leader, so it can never get a terminal again).
    assert os.getsid(pid) not in (pid, os.getsid(0))
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[4] == "0"  # tty_nr: no controlling terminal
    ios = fio("--name=a", f"--filename={a}", "--name=b", f"--filename={b}", rw="randrw", iodepth=4, size="8M",
              number_ios=1000)
    status = json_out(blkfleet("capture", "status", "-D", out))
    assert status["state"] == "running" and status["pid"] == pid
    summary = stop(out)
    for dev in (a, b):
        assert summary["devices"][os.path.basename(dev)]["queued"] == ios[dev] == 1000
    assert summary["queued"] == 2000 and summary["drops"] == 0


@pytest.mark.parametrize("mode", ["raw", "events"])
def test_killed_capture_restores_tracer_and_salvages(loopdev, capture_dirs, mode):
    need("fio")
    dev = loopdev(32 << 20)
    before = tracer_view(dev)
    out = capture_dirs()
    doc = start(dev, out, "--backend", "ftrace", "--mode", mode)
    fio("--name=k", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=500)
    time.sleep(0.3)  # let the reader move the pages to disk
    assert tracer_view(dev) != before
    os.kill(doc["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_start(doc["pid"]) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = json_out(blkfleet("capture", "status", "-D", out))
    assert status["state"] == "dead" and status["recoverable"] is True
    assert tracer_view(dev) != before  # status changes nothing
    run = blkfleet("capture", "start", "-d", dev, "-D", out)
    assert run.returncode == 2 and "died" in run.stderr and len(run.stderr.splitlines()) == 1
    assert tracer_view(dev) != before  # nor does a start that refuses
    summary = stop(out, code=2)  # salvaged, with an error saying what happened
    assert summary["state"] == "salvaged" and "died" in summary["error"]
    assert "ftrace tracer state restored" in summary["error"]
    assert tracer_view(dev) == before
    # Every IO: what the reader had moved to disk, and what was still in the kernel's buffers.
    assert summary["queued"] == 500
    again = stop(out)  # a later stop: the same summary, no change, exit 0
    assert again["stopped"] is False and "already stopped" in again["message"] and again["queued"] == 500


@pytest.mark.parametrize("mode", ["raw", "events"])
def test_sigkill_right_after_the_io_loses_nothing(loopdev, capture_dirs, mode):
    """The daemon killed right after fio, before it read the buffers: stop salvages what the kernel still
    holds (the capture lost up to 76 IOs this way) and says how many events it recovered."""
    need("fio")
    dev = loopdev(32 << 20)
    out = capture_dirs()
    doc = start(dev, out, "--backend", "ftrace", "--mode", mode, "--interval", "5")
    fio("--name=k", f"--filename={dev}", rw="randrw", iodepth=8, size="8M", number_ios=700)
    os.kill(doc["pid"], signal.SIGKILL)
    summary = stop(out, code=2)
    assert summary["state"] == "salvaged" and summary["queued"] == 700
    recovered = summary["salvaged"]["events"]
    assert recovered >= 700 and summary["salvaged"]["error"] is None
    assert f"{recovered} events recovered from the kernel's buffers" in summary["error"]
    assert control.inspect(out).kind == "salvaged"


def test_start_twice_stop_twice_and_duration(loopdev, capture_dirs):
    dev = loopdev(8 << 20)
    out = capture_dirs()
    first = start(dev, out, "--backend", "ftrace")
    second = start(dev, out, "--backend", "ftrace")
    assert second["started"] is False and second["pid"] == first["pid"] and "already running" in second["message"]
    other = loopdev(8 << 20)
    run = blkfleet("capture", "start", "-d", other, "-D", out)
    assert run.returncode == 2 and "already running" in run.stderr
    busy = blkfleet("capture", "start", "--backend", "ftrace", "-d", other, "-D", capture_dirs("busy"))
    assert busy.returncode == 2 and "in use by another capture" in busy.stderr
    one = stop(out)
    two = stop(out)
    assert one["stopped"] is True and two["stopped"] is False and "already stopped" in two["message"]
    assert two["queued"] == one["queued"] and two["files"] == one["files"]
    out2 = capture_dirs("timed")
    start(dev, out2, "--backend", "ftrace", "--duration", "0.5")
    deadline = time.monotonic() + 20
    while json_out(blkfleet("capture", "status", "-D", out2))["state"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = stop(out2)
    assert done["stopped"] is False and done["stop_reason"] == "duration"


def test_run_tokens(loopdev, capture_dirs):
    """A play interrupted during its capture left it running; the next run reused it, even with force."""
    need("fio")
    dev = loopdev(16 << 20)
    out = capture_dirs()
    first = start(dev, out, "--backend", "ftrace", "--token", "run-1")
    assert start(dev, out, "--backend", "ftrace", "--token", "run-1")["started"] is False  # idempotent
    fio("--name=a", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=400)
    run = blkfleet("capture", "start", "--backend", "ftrace", "-d", dev, "-D", out, "--token", "run-2")
    assert run.returncode == 2 and "a capture of another run (token run-1) is running" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    check = start(dev, out, "--backend", "ftrace", "--token", "run-2", "--force", "--check")
    assert check["check"] is True and check["started"] is True and control.inspect(out).pid == first["pid"]
    second = start(dev, out, "--backend", "ftrace", "--token", "run-2", "--force")
    assert second["started"] is True and second["token"] == "run-2" and process_start(first["pid"]) is None
    fio("--name=b", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=300)
    refused = blkfleet("capture", "stop", "-D", out, "--token", "run-1")
    assert refused.returncode == 2 and "belongs to another run (token run-2, not run-1)" in refused.stderr
    summary = stop(out, "--token", "run-2")
    assert summary["queued"] == 300 and summary["token"] == "run-2"  # only the second run's IO
    again = start(dev, out, "--backend", "ftrace", "--token", "run-2")
    assert again["started"] is False and again["state"] == "stopped"  # that run's capture already ran
    assert blkfleet("capture", "start", "-d", dev, "-D", out, "--token", "bad token").returncode == 2


def test_stale_pid_is_detected(loopdev, capture_dirs):
    dev = loopdev(8 << 20)
    out = capture_dirs()
    out.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    doc = {"version": state.VERSION, "state": "running", "pid": gone.pid, "pid_start": 1, "backend": "ftrace",
           "mode": "events", "devices": [os.path.basename(dev)], "start_epoch": time.time(), "start_time": "then",
           "backend_info": {"ncpus": 2, "page_size": 4096}}
    state.save(str(out), doc)
    status = json_out(blkfleet("capture", "status", "-D", out))
    assert status["state"] == "dead" and "died" in status["message"]
    refused = blkfleet("capture", "start", "-d", dev, "-D", out)
    assert refused.returncode == 2 and "--force" in refused.stderr
    doc = start(dev, out, "--force")
    assert doc["started"] is True
    assert stop(out)["stopped"] is True
    run = blkfleet("capture", "restore")
    if run.returncode == 2:  # another user of the tracer (a parallel test run) holds it now
        assert "in use by another capture" in run.stderr and len(run.stderr.splitlines()) == 1
    else:
        assert json_out(run)["action"] == "restore"


def test_fail_on_drops(loopdev, capture_dirs):
    need("fio")
    dev = loopdev(32 << 20)
    out = capture_dirs()
    # A one-page-per-CPU sized buffer (4 KiB) emptied every 30 s: the kernel must drop events.
    start(dev, out, "--backend", "ftrace", "--mode", "raw", "--act-mask", "all", "-b", "4", "-n", "1",
          "--interval", "30")
    fio("--name=d", f"--filename={dev}", rw="randread", iodepth=4, size="16M", number_ios=3000)
    run = blkfleet("capture", "stop", "-D", out, "--fail-on-drops")
    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    assert summary["drops"] > 0 and summary["queued"] < 3000
    assert "dropped" in run.stderr and len(run.stderr.splitlines()) == 1
    assert any(s["overrun"] for s in summary["kernel"].values())


def test_capture_json_gives_a_bundle_its_source_device(loopdev, capture_dirs, tmp_path):
    """capture.json records each device's dev, size and logical block size when it starts (``block_devices``),
    which ``bundle create --trace-dir`` puts in the manifest: no test fixture shape is read for it."""
    need("fio")
    dev = loopdev(48 << 20)
    name = os.path.basename(dev)
    out = capture_dirs()
    rdev = os.stat(dev).st_rdev
    facts = {"dev": f"{os.major(rdev)}:{os.minor(rdev)}", "size": 48 << 20, "logical_block_size": 512}
    assert start(dev, out, "--backend", "ftrace")["block_devices"] == {name: facts}
    fio("--name=b", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=200)
    assert stop(out)["block_devices"] == {name: facts}
    replay = tmp_path / "replay"
    replay.mkdir()
    run = blkfleet("record", "-q", "-d", out, "-D", replay, name)
    assert run.returncode == 0, run.stderr
    run = blkfleet("bundle", "create", "-d", replay, "-o", tmp_path / "b.bundle", "--trace-dir", out,
                   "--json", "-", name)
    assert run.returncode == 0, run.stderr
    (device,) = json.loads(run.stdout)["result"]["devices"]
    assert (device["dev"], device["size"], device["logical_block_size"]) == (facts["dev"], 48 << 20, 512)


def test_retired_pipe_mode_is_raw(loopdev, capture_dirs):
    """--mode pipe (the former trace_pipe mode) still starts: as raw, the same blk tracer records."""
    need("fio")
    dev = loopdev(32 << 20)
    out = capture_dirs()
    doc = start(dev, out, "--backend", "ftrace", "--mode", "pipe")
    assert doc["mode"] == "raw" and doc["options"]["mode"] == "pipe"
    fio("--name=p", f"--filename={dev}", rw="randrw", iodepth=8, size="16M", number_ios=2000)
    summary = stop(out, "--fail-on-drops")
    assert summary["queued"] == 2000 and summary["skipped_bytes"] == 0


@pytest.mark.parametrize("debugfs", ["unmounted", "mounted"], indirect=True)
def test_explicit_blktrace(loopdev, capture_dirs, debugfs):
    """On a host as it boots (debugfs not mounted) blktrace gets debugfs mounted for it, and unmounted after;
    a debugfs someone else mounted stays mounted."""
    need("blktrace")
    dev = loopdev(8 << 20)
    out = capture_dirs()
    before = tracer_view(dev)
    run = blkfleet("capture", "start", "--backend", "blktrace", "-d", dev, "-D", out)
    if run.returncode == 0:  # a kernel that allows relay files: blktrace captures
        assert blktrace._mounted(blktrace.DEBUGFS, "debugfs")
        fio("--name=b", f"--filename={dev}", rw="randread", iodepth=4, size="4M", number_ios=300)
        summary = stop(out)
        assert summary["backend"] == "blktrace" and summary["queued"] == 300
    else:
        assert run.returncode == 2
        assert run.stdout == "" and len(run.stderr.splitlines()) == 1
        assert re.match(r"blkfleet: blktrace cannot trace here: .*(Operation not permitted|Permission denied)",
                        run.stderr), run.stderr
        assert control.inspect(out).kind == "none"
        assert sorted(os.listdir(out)) == ["capture.log"]  # no staging, no blktrace.log left
    assert tracer_view(dev) == before
    assert blktrace._mounted(blktrace.DEBUGFS, "debugfs") == (debugfs == "mounted")


def test_one_line_errors(loopdev, capture_dirs, monkeypatch, tmp_path):
    out = capture_dirs()
    run = blkfleet("capture", "start", "-d", "nosuchdisk9", "-D", out)
    assert (run.returncode, run.stderr) == (2, "blkfleet: no such block device: nosuchdisk9\n")
    run = blkfleet("capture", "stop", "-D", tmp_path / "empty")
    assert run.returncode == 2 and "no capture in" in run.stderr
    assert json_out(blkfleet("capture", "status", "-D", tmp_path / "empty"))["state"] == "none"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BlkfleetError, match="needs root"):
        control.start(control.StartOptions([loopdev(8 << 20)], str(out)))


def test_full_disk_stops_with_error_and_keeps_data(loopdev, capture_dirs, tmp_path):
    need("fio")
    dev = loopdev(64 << 20)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)], check=True)
    try:
        out = small / "cap"
        start(dev, out, "--backend", "ftrace", "--mode", "raw", "--act-mask", "all")
        fio("--name=f", f"--filename={dev}", rw="randread", iodepth=8, size="32M", number_ios=8000)
        deadline = time.monotonic() + 20
        while json_out(blkfleet("capture", "status", "-D", out))["state"] == "running":
            assert time.monotonic() < deadline, "the capture did not stop on a full disk"
            time.sleep(0.2)
        run = blkfleet("capture", "stop", "-D", out)
        assert run.returncode == 2
        summary = json.loads(run.stdout)
        assert "No space left" in summary["error"] and "kept" in summary["error"]
        assert summary["state"] in ("stopped", "failed") and summary["stop_reason"] == "error"
        assert os.path.getsize(out / "raw" / "cpu0") + os.path.getsize(out / "raw" / "cpu1") > 0
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_stop_shows_progress_on_a_terminal_only(loopdev, capture_dirs, tmp_path):
    """capture stop waits for the daemon to write the trace files: on a terminal it says how far that got."""
    need("fio")
    dev = loopdev(16 << 20)
    for on_terminal in (True, False):
        out = capture_dirs(f"cap-{on_terminal}")
        start(dev, out, "--backend", "ftrace")
        fio("--name=a", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=300)
        argv = [sys.executable, "-m", "blkfleet", "capture", "stop", "-D", str(out)]
        if on_terminal:
            rc, terminal, stdout = run_on_terminal(argv, tmp_path, env=ENV)
            assert rc == 0, terminal
            assert re.search(r"\r\x1b\[Kblkfleet capture stop: [0-9.]+ MiB of trace files, [0-9.]+ s", terminal)
        else:
            run = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120)
            assert run.returncode == 0 and run.stderr == "", run.stderr
            stdout = run.stdout
        assert json.loads(stdout)["queued"] == 300

"""blkfleet runs captures as root: what a local user (or a crafted capture.json) can make it do (root).

Each test is an attack that worked before: a state naming a lock path (truncated) and a tracer snapshot
(written where it said), a pid that ``stop`` signalled, links planted at the names of files a capture makes,
trace file names that lead out of the directory.
"""

import json
import os
import subprocess
import time

import pytest

from blkfleet.process import process_start
from helpers.capture_cli import blkfleet, fio, json_out, need

pytestmark = pytest.mark.root
NOBODY = 65534
CRON_LINE = "* * * * * root touch /tmp/blkfleet-pwned\n"


def attacker_files(tmp_path):
    """What the attack of a dead ftrace state needs: a victim file (the 'lock') and a fake tracer snapshot
    beside it that names a directory to write into (the 'tracefs', e.g. /etc/cron.d)."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cron = tmp_path / "cron.d"
    cron.mkdir()
    snapshot = {"tracing": str(cron), "values": {"tracing_on": "0", "current_tracer": CRON_LINE}, "devices": {}}
    (tmp_path / "victim.state.json").write_text(json.dumps(snapshot))
    return victim, cron


def dead_state(**extra):
    doc = {"version": 2, "state": "running", "pid": 1 << 21, "pid_start": 1, "backend": "ftrace",
           "mode": "events", "devices": ["loop0"], "start_epoch": time.time(), "start_time": "then",
           "backend_info": {"ncpus": 1, "page_size": 4096}, "run_id": "1" * 32}
    doc.update(extra)
    return doc


def write_state(out, doc):
    """capture.json as anyone able to write it would: plain JSON."""
    (out / "capture.json").write_text(json.dumps(doc))
    os.chmod(out / "capture.json", 0o644)


def untouched(victim, cron):
    return victim.read_text() == "precious\n" and list(cron.iterdir()) == []


def one_line_error(run):
    return run.returncode == 2 and run.stdout == "" and len(run.stderr.splitlines()) == 1 \
        and run.stderr.startswith("blkfleet: ")


def test_a_directory_others_can_write_is_refused(tmp_path, capture_dirs):
    """The default directory used to be under /var/tmp: any user could make it first and fill it."""
    victim, cron = attacker_files(tmp_path)
    shared = tmp_path / "var-tmp"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    out = shared / "capture"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    (out / "capture.json").write_text(json.dumps(dead_state(lock_path=str(victim))))
    os.chown(out / "capture.json", NOBODY, NOBODY)
    for args in (["status"], ["stop"], ["restore"], ["start", "-d", "loop0"]):
        run = blkfleet("capture", args[0], "-D", out, *args[1:])
        assert one_line_error(run), (args, run.stderr)
        assert "refusing this capture directory: it is owned by uid 65534" in run.stderr
    assert untouched(victim, cron)
    # a directory of root's that others may write to, and root's directory below a user's
    mine = shared / "mine"
    mine.mkdir(mode=0o777)
    os.chmod(mine, 0o777)
    assert "others can write to it" in blkfleet("capture", "status", "-D", mine).stderr
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    (theirs / "cap").mkdir()
    assert "above it is owned by uid 65534" in blkfleet("capture", "status", "-D", theirs / "cap").stderr


def test_state_never_names_a_lock_or_snapshot_to_use(tmp_path, capture_dirs):
    """A dead ftrace state with lock_path set: root truncated that file and wrote the snapshot's text (a cron
    line) where the snapshot said. Now no path is taken from the state, even in root's own directory."""
    victim, cron = attacker_files(tmp_path)
    out = capture_dirs()
    out.mkdir(mode=0o700)
    write_state(out, dead_state(lock_path=str(victim), log=str(victim), state_file=str(victim),
                               output_dir=str(tmp_path)))
    for args in (["status"], ["restore"], ["start", "-d", "loop0"]):
        blkfleet("capture", args[0], "-D", out, *args[1:])
        assert untouched(victim, cron), args
    summary = json_out(blkfleet("capture", "stop", "-D", out))
    assert summary["state"] == "salvaged" and "no tracer state of it left to restore" in summary["error"]
    assert untouched(victim, cron)


def test_stop_signals_only_the_proven_daemon(loopdev, tmp_path, capture_dirs):
    """``stop`` sent SIGTERM to whatever pid the state named (its start time, which anyone can read, was the
    only check)."""
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        out = capture_dirs()
        out.mkdir(mode=0o700)
        write_state(out, dead_state(pid=bystander.pid, pid_start=process_start(bystander.pid)))
        assert json_out(blkfleet("capture", "status", "-D", out))["state"] == "dead"
        blkfleet("capture", "stop", "-D", out)
        time.sleep(0.2)
        assert bystander.poll() is None, "stop signalled a process that is not the capture"

        # A real capture whose state names the bystander: stop signals the daemon that holds the run lock.
        dev = loopdev(8 << 20)
        real = capture_dirs("real")
        doc = json_out(blkfleet("capture", "start", "--backend", "ftrace", "-d", dev, "-D", real))
        daemon_pid = doc["pid"]
        tampered = json.loads((real / "capture.json").read_text())
        tampered.update(pid=bystander.pid, pid_start=process_start(bystander.pid))
        write_state(real, tampered)
        summary = json_out(blkfleet("capture", "stop", "-D", real))
        assert summary["stopped"] is True and summary["error"] is None
        assert process_start(daemon_pid) is None and bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_planted_links_are_never_followed(loopdev, tmp_path, capture_dirs):
    """Links at the names of files a capture makes (its temporary state files, reserve, raw directory, trace
    files, blktrace's log) made root write through them."""
    need("fio")
    dev = loopdev(16 << 20)
    name = os.path.basename(dev)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    out = capture_dirs()
    out.mkdir(mode=0o700)
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in range(last + 1, last + 3000):  # the daemon's temporary capture.json.<pid>.tmp
        (out / f"capture.json.{pid}.tmp").symlink_to(victim)
    for link in (".capture.reserve", "blktrace.log", *(f"{name}.blktrace.{cpu}" for cpu in range(os.cpu_count()))):
        (out / link).symlink_to(victim)
    (out / "raw").symlink_to(victim_dir)
    (out / ".capture.tmp").symlink_to(victim_dir)
    run = blkfleet("capture", "start", "--backend", "ftrace", "--mode", "raw", "-d", dev, "-D", out)
    assert run.returncode == 0, run.stderr
    fio("--name=l", f"--filename={dev}", rw="randwrite", iodepth=4, size="8M", number_ios=300)
    summary = json_out(blkfleet("capture", "stop", "-D", out))
    assert summary["queued"] == 300
    assert victim.read_text() == "precious\n" and list(victim_dir.iterdir()) == []
    for f in summary["files"]:
        assert not os.path.islink(out / f) and os.path.getsize(out / f) == summary["devices"][name]["files"][f][
            "file_bytes"]


def test_a_planted_capture_log_link_fails_start(loopdev, tmp_path, capture_dirs):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = capture_dirs()
    out.mkdir(mode=0o700)
    (out / "capture.log").symlink_to(victim)
    run = blkfleet("capture", "start", "--backend", "ftrace", "-d", loopdev(8 << 20), "-D", out)
    assert one_line_error(run) and "capture.log: cannot open the capture log" in run.stderr
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("files", [["/etc/shadow"], ["../../x"], ["loop0.blktrace.0", "a/b.blktrace.1"],
                                   ["-rf.blktrace.0"]])
def test_trace_file_names_stay_in_the_directory(capture_dirs, files):
    """The files list of a state became paths outside the directory (and the capture role fetched them)."""
    out = capture_dirs()
    out.mkdir(mode=0o700)
    write_state(out, {"version": 2, "state": "stopped", "stop_time": "then",
                     "summary": {"files": files, "queued": 1, "drops": 0, "error": None}})
    for action in ("stop", "status"):
        run = blkfleet("capture", action, "-D", out)
        assert one_line_error(run) and "not a plain DEV.blktrace.CPU name" in run.stderr, run.stderr


def test_a_state_file_others_can_write_is_refused(capture_dirs):
    out = capture_dirs()
    out.mkdir(mode=0o700)
    write_state(out, {"version": 2, "state": "stopped"})
    os.chmod(out / "capture.json", 0o666)
    run = blkfleet("capture", "status", "-D", out)
    assert one_line_error(run) and "writable by others" in run.stderr
    os.chmod(out / "capture.json", 0o644)
    os.chown(out / "capture.json", NOBODY, NOBODY)
    assert "owned by uid 65534" in blkfleet("capture", "stop", "-D", out).stderr
    os.unlink(out / "capture.json")
    os.symlink("/etc/passwd", out / "capture.json")
    assert "not a regular file" in blkfleet("capture", "status", "-D", out).stderr


def test_new_capture_directory_is_root_only(loopdev, tmp_path, capture_dirs):
    out = capture_dirs()
    doc = json_out(blkfleet("capture", "start", "--backend", "ftrace", "-d", loopdev(8 << 20), "-D", out))
    assert doc["started"] is True
    assert oct(os.stat(out).st_mode & 0o777) == "0o700"
    record = f"/run/blkfleet/capture/{os.stat(out).st_dev:x}-{os.stat(out).st_ino:x}"
    assert os.path.exists(record + ".json") and os.path.exists(record + ".lock")
    assert oct(os.stat("/run/blkfleet/capture").st_mode & 0o777) == "0o700"
    assert json_out(blkfleet("capture", "stop", "-D", out))["stopped"] is True
    assert not os.path.exists(record + ".json") and not os.path.exists(record + ".lock")
    assert process_start(doc["pid"]) is None  # the daemon is gone (or a zombie) once its lock is free

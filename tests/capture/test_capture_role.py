"""The capture role through the real ``ansible-playbook playbooks/capture.yml`` on this machine (root, fio).

A failed workload, an interrupted play and a fetch onto a full disk, for real: the capture of the run is
stopped, the next run captures only its own IO, and no truncated file ever gets a trace file's name.
"""

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

from blkfleet.capture import control
from helpers.adhoc import REPO, ansible_bin, ansible_env, run_adhoc
from helpers.capture_cli import blkfleet, json_out, need

pytestmark = [pytest.mark.root, pytest.mark.slow]


def fio_cmd(dev, ios, then=""):
    fio = (f"fio --name=w --filename={dev} --rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=4 "
           f"--size=8M --number_ios={ios} --randseed=7 --output-format=terse")
    return f"sh -c '{fio} && {then}'" if then else fio


def playbook(out, fetch, dev, workload, **extra):
    program = ansible_bin("ansible-playbook")
    if program is None:
        pytest.skip("ansible-playbook is not installed")
    variables = {"blkfleet_sources": "localhost", "capture_devices": [dev], "capture_output_dir": str(out),
                 "capture_fetch_dir": str(fetch), "capture_workload_command": workload, "capture_backend": "ftrace",
                 "capture_busy_timeout": 600, **extra}
    return [program, "playbooks/capture.yml", "-e", json.dumps(variables)]


def run_playbook(argv, timeout=600):
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=ansible_env())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def role_env(loopdev, capture_dirs, tmp_path):
    need("fio")
    dev = loopdev(16 << 20)
    fetch = tmp_path / "fetch"
    fetch.mkdir()
    return dev, capture_dirs(), fetch


def test_traces_are_fetched_verified(role_env):
    dev, out, fetch = role_env
    run = run_playbook(playbook(out, fetch, dev, fio_cmd(dev, 600)))
    assert run.returncode == 0, run.stdout[-4000:]
    host = fetch / "localhost"
    summary = json.loads((host / "capture.json").read_text())["summary"]
    assert summary["queued"] == 600
    assert sorted(os.listdir(host)) == sorted(summary["files"] + ["capture.json"])  # no temporary copy left
    for name in os.listdir(host):
        assert sha256(host / name) == sha256(out / name)
    assert json.loads((out / "capture.json").read_text())["token"].startswith("blkfleet-")


def test_a_fetch_onto_a_full_disk_leaves_no_truncated_trace(role_env, tmp_path):
    """ENOSPC on the controller left a trace cut at 512 records and an empty capture.json under their names."""
    dev, out, _ = role_env
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        run = run_playbook(playbook(out, small, dev, fio_cmd(dev, 3000)))
        assert run.returncode != 0
        host = small / "localhost"
        left = os.listdir(host) if host.exists() else []
        for name in left:  # whatever has a final name is complete
            assert name.startswith(".") or sha256(host / name) == sha256(out / name), name
        assert not [n for n in left if n.startswith(".")], left  # temporary copies removed
        assert len(left) < len(os.listdir(out)) and "Fetch and verify the traces" in run.stdout, run.stdout[-4000:]
        assert "No space left on device" in run.stdout, run.stdout[-4000:]
        assert control.inspect(out).kind == "stopped"
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_a_failed_workload_stops_the_capture(role_env):
    dev, out, fetch = role_env
    run = run_playbook(playbook(out, fetch, dev, fio_cmd(dev, 200, then="exit 3")))
    assert run.returncode != 0
    status = json_out(blkfleet("capture", "status", "-D", out))
    assert status["state"] == "stopped" and status["queued"] == 200
    assert "Stop this run's capture" in run.stdout


def marked_processes(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_an_interrupted_play_is_not_reused_by_the_next(role_env):
    """Ctrl-C during the capture step left the capture running; the next run reused it (both runs' IO and the
    gap between them replayed as one trace), even with capture_force. Ctrl-C ends ansible-playbook at once
    (exit 99: no always section runs), so the capture does run on; the next run, with a token of its own,
    stops and discards it (capture_force) and captures only its own IO."""
    dev, out, fetch = role_env
    marker = "599.25"  # the sleep that keeps the first run's workload going until it is interrupted
    first = subprocess.Popen(playbook(out, fetch, dev, fio_cmd(dev, 1000, then=f"sleep {marker}")), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(),
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marked_processes(f"sleep\0{marker}"):  # the first run's fio has finished
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()[-4000:]
            time.sleep(0.2)
        assert control.inspect(out).kind == "running"
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        first.wait(120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        for pid in marked_processes(f"sleep\0{marker}"):
            os.kill(pid, signal.SIGKILL)
        first.stdout.close()
    run = run_playbook(playbook(out, fetch, dev, fio_cmd(dev, 700)))
    assert run.returncode == 0, run.stdout[-4000:]
    summary = json.loads((fetch / "localhost" / "capture.json").read_text())["summary"]
    assert summary["queued"] == 700  # this run's IO only


@pytest.fixture(scope="module")
def engine_path():
    """This checkout's engine, installed (the module's default is the newest engine anyone installed)."""
    rc, result, run = run_adhoc("blkfleet.core.engine")
    assert rc == 0, run.stdout + run.stderr
    return result["path"]


@pytest.fixture
def adhoc(engine_path):
    def run(args, check=False):
        return run_adhoc("blkfleet.core.blktrace", f"{args} engine={engine_path}", check=check, timeout=300)

    return run


def test_module_refuses_trace_files_outside_the_directory(adhoc, capture_dirs):
    out = capture_dirs()
    out.mkdir(mode=0o700)
    (out / "capture.json").write_text(json.dumps({"version": 2, "state": "stopped", "stop_time": "then",
                                                  "summary": {"files": ["/etc/shadow", "../../x"], "queued": 1}}))
    rc, result, run = adhoc(f"state=stopped output_dir={out}")
    assert rc != 0 and "not a plain DEV.blktrace.CPU name" in result["msg"], run.stdout
    assert "files" not in result and "file_info" not in result


def test_module_on_a_dead_capture(adhoc, loopdev, capture_dirs):
    """Check mode on a dead capture restored the tracer; after the salvage every later stop failed (rc 2);
    check-mode start into a directory holding a finished capture predicted success."""
    need("fio")
    dev = loopdev(16 << 20)
    out = capture_dirs()
    rc, result, run = adhoc(f"devices={dev} output_dir={out} token=a backend=ftrace mode=raw busy_timeout=600")
    assert rc == 0 and result["changed"] is True, run.stdout
    subprocess.run(["fio", "--name=d", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--bs=4k",
                    "--rw=randwrite", "--size=8M", "--number_ios=300", "--output-format=terse"], check=True,
                   capture_output=True)
    os.kill(result["capture"]["pid"], signal.SIGKILL)
    time.sleep(0.2)
    with open("/sys/kernel/tracing/current_tracer") as f:
        assert f.read().strip() == "blk"
    for _ in range(2):
        rc, result, run = adhoc(f"state=stopped output_dir={out} token=a", check=True)
        assert rc == 0 and result["changed"] is True and result["state"] == "dead", run.stdout
    with open("/sys/kernel/tracing/current_tracer") as f:
        assert f.read().strip() == "blk"  # check mode changed nothing on the host
    assert control.inspect(out).record is not None
    rc, result, run = adhoc(f"state=stopped output_dir={out} token=a")
    assert rc != 0 and result["changed"] is True and result["state"] == "salvaged" and result["queued"] == 300
    for check in (True, False):  # a later stop: nothing to do, no failure
        rc, result, run = adhoc(f"state=stopped output_dir={out} token=a", check=check)
        assert rc == 0 and result["changed"] is False and result["state"] == "salvaged", run.stdout
    rc, result, run = adhoc(f"devices={dev} output_dir={out} token=b", check=True)
    assert rc != 0 and "holds a finished capture" in result["msg"]  # as the real start
    rc, result, run = adhoc(f"devices={dev} output_dir={out} token=b")
    assert rc != 0 and "holds a finished capture" in result["msg"]


def test_module_start_on_a_finished_capture_is_idempotent(adhoc, loopdev, capture_dirs):
    """state=started again, without a token, on the directory of the capture it started and that finished: nothing
    to do, as for a running one (it failed without force). Check mode predicts the same. Other devices, or
    another run's token, still need force: the finished capture's files would be discarded."""
    dev, other = loopdev(16 << 20), loopdev(16 << 20)
    out = capture_dirs()
    rc, result, run = adhoc(f"devices={dev} output_dir={out} backend=ftrace duration=0.3 busy_timeout=600")
    assert rc == 0 and result["changed"] is True, run.stdout
    deadline = time.monotonic() + 30
    while control.inspect(out).kind == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert control.inspect(out).kind == "stopped"
    for check in (True, False):
        rc, result, run = adhoc(f"devices={dev} output_dir={out} backend=ftrace", check=check)
        assert rc == 0 and result["changed"] is False and result["state"] == "stopped", run.stdout
        assert result["capture"]["started"] is False
    assert control.inspect(out).kind == "stopped"
    for args in (f"devices={other}", f"devices={dev} token=next"):
        for check in (True, False):
            rc, result, run = adhoc(f"{args} output_dir={out} backend=ftrace", check=check)
            assert rc != 0 and "holds a finished capture" in result["msg"], run.stdout
    first = control.inspect(out).state["run_id"]
    for check in (True, False):  # force still discards it and captures afresh
        rc, result, run = adhoc(f"devices={dev} output_dir={out} backend=ftrace duration=0.3 force=true "
                                "busy_timeout=600", check=check)
        assert rc == 0 and result["changed"] is True and result["capture"]["started"] is True, run.stdout
        assert (control.inspect(out).state["run_id"] == first) is check

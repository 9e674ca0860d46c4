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
from capture_util import blkfleet, json_out, need

from blkfleet.capture import control
from helpers.adhoc import REPO, ansible_bin, ansible_env

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
        assert len(left) < len(os.listdir(out)) and "were not fetched" in run.stdout, run.stdout[-4000:]
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
    gap between them replayed as one trace), even with capture_force."""
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

"""Job control of real replays on loop devices: ``--run-id``/``--lease`` and ``blkfleet job status|renew|stop``.

The run directories are the real ones (/run/blkfleet/replay/ID); each test uses IDs of its own and removes them.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.files import private_dir, write_json_file
from blkfleet.process import process_start
from blkfleet.replay import job
from helpers import ENV
from helpers.replay import map_file, slow_trace, validate

pytestmark = pytest.mark.root


@pytest.fixture
def run_ids():
    """Factory of fresh run IDs; their run directories are removed afterwards."""
    made = []

    def make():
        made.append(f"test-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for run_id in made:
        shutil.rmtree(os.path.join(job.RUN_ROOT, run_id), ignore_errors=True)


def blkfleet(*args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def job_cmd(action, run_id, *extra):
    code, out, err = blkfleet("job", action, run_id, *extra)
    assert code == 0, err
    assert out.count("\n") == 1
    return json.loads(out)


def start_replay(tmp_path, target, run_id, *extra, seconds=10.0):
    slow_trace(tmp_path, seconds=seconds)
    res = tmp_path / "res.json"
    proc = subprocess.Popen([sys.executable, "-m", "blkfleet", "replay", "-d", str(tmp_path), "-M",
                             str(map_file(tmp_path, target)), "--json", str(res), "--run-id", run_id,
                             *map(str, extra), "loop1"], env=ENV, stderr=subprocess.PIPE, text=True)
    run_json = Path(job.RUN_ROOT) / run_id / "run.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if run_json.exists() and json.loads(run_json.read_text())["pid"] == proc.pid:
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail(f"no run.json: {proc.communicate()[1]}")
    return proc, res


def test_lease_expiry_stops_a_real_replay_with_partial_results(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    proc, res = start_replay(tmp_path, loopdev(64 << 20), run_id, "--lease", "1.5")
    lease = Path(job.RUN_ROOT) / run_id / "lease"
    leased_at = lease.stat().st_mtime
    assert job_cmd("status", run_id)["state"] == "running"
    proc.wait(timeout=20)
    ended = time.time()
    err = proc.stderr.read()
    assert ended - leased_at <= 1.5 + 1.0, f"ended {ended - leased_at:.2f} s after the lease began"
    assert proc.returncode == 4, err
    assert err.strip().splitlines()[-1].startswith("blkfleet: run ") and "lease expired" in err
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["interrupted"] and doc["stop_reason"] == "lease expired" and 0 < doc["total"]["ios"] < 2000
    st = job_cmd("status", run_id)
    assert st["state"] == "finished" and st["exit_code"] == 4 and st["stop_reason"] == "lease expired"
    assert st["results"] == str(res) and st["pid"] == proc.pid and st["lease_s"] == 1.5


def test_renewed_lease_keeps_it_running_and_job_stop_stops_it(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    proc, res = start_replay(tmp_path, loopdev(64 << 20), run_id, "--lease", "1.5")
    try:
        for _ in range(6):  # 3 s: twice the lease
            time.sleep(0.5)
            doc = job_cmd("renew", run_id)
            assert doc["renewed"] is True and doc["state"] == "running" and doc["lease_age_s"] < 0.5
        assert proc.poll() is None
        started = time.monotonic()
        doc = job_cmd("stop", run_id)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert doc["stopped"] is True and doc["state"] == "finished" and doc["exit_code"] == 130
    assert doc["stop_reason"] == "SIGTERM" and doc["results"] == str(res)
    assert proc.returncode == 130
    out = json.loads(res.read_text())
    validate(out)
    assert out["interrupted"] and out["stop_reason"] == "SIGTERM" and 0 < out["total"]["ios"] < 2000
    again = job_cmd("renew", run_id)
    assert again["renewed"] is False and again["state"] == "finished"
    assert job_cmd("stop", run_id)["stopped"] is False


def test_run_without_lease_runs_to_the_end(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    proc, res = start_replay(tmp_path, loopdev(64 << 20), run_id, seconds=1.0)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    doc = job_cmd("status", run_id)
    assert doc["state"] == "finished" and doc["exit_code"] == 0 and doc["stop_reason"] is None
    assert doc["lease_s"] is None and doc["results"] == str(res)
    assert json.loads(res.read_text())["stop_reason"] is None


def test_a_live_run_id_cannot_start_twice(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    target = loopdev(64 << 20)
    proc, _res = start_replay(tmp_path, target, run_id)
    try:
        second = tmp_path / "second"
        second.mkdir()
        slow_trace(second, seconds=1.0)
        code, _out, err = blkfleet("replay", "-d", second, "-M", map_file(second, target), "--run-id", run_id,
                                   "loop1")
        assert code == 2 and err.count("\n") == 1
        assert f"run {run_id} is already running (pid {proc.pid}" in err
        assert job_cmd("status", run_id)["pid"] == proc.pid  # the run state is still the first one's
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert job_cmd("status", run_id)["state"] == "finished"


def forge(run_id, pid, **fields):
    path = private_dir(os.path.join(job.RUN_ROOT, run_id))
    state = {"version": 1, "run_id": run_id, "pid": pid, "pid_start": process_start(pid), "state": "running",
             "started": "2026-01-01T00:00:00.000+00:00", "lease_s": None, "results": None, "exit_code": None,
             "stop_reason": None, **fields}
    write_json_file(os.path.join(path, "run.json"), state, mode=0o600)


def test_a_forged_run_json_naming_a_foreign_pid_is_never_signalled(tmp_path, loopdev, run_ids):
    sleeper = subprocess.Popen(["sleep", "60"])
    other_run = run_ids()
    proc, _res = start_replay(tmp_path, loopdev(64 << 20), other_run)
    try:
        for victim in (sleeper.pid, proc.pid, os.getpid()):
            run_id = run_ids()
            forge(run_id, victim)  # the right start time: only the command line tells it is not this run's
            doc = job_cmd("stop", run_id, "--timeout", "1")
            assert doc["stopped"] is False and doc["state"] == "dead" and "command line" in doc["problem"]
            assert job_cmd("status", run_id)["state"] == "dead"
        run_id = run_ids()
        forge(run_id, sleeper.pid, pid_start=process_start(sleeper.pid) + 1)  # a reused pid
        assert job_cmd("stop", run_id)["stopped"] is False
        time.sleep(0.3)
        assert sleeper.poll() is None and proc.poll() is None
        assert job_cmd("status", other_run)["state"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_bad_input_is_one_line_and_exit_2(tmp_path, run_ids, capsys):
    for argv in (["job", "status", "../x"], ["job", "stop", "a/b"], ["job", "renew", "-x"],
                 ["job", "stop", "ok", "--timeout", "nan"], ["job", "nosuch", "x"],
                 ["replay", "--run-id", "pts_.._x", "loop1"], ["replay", "--lease", "5", "loop1"],
                 ["replay", "--run-id", "x", "--lease", "0", "loop1"],
                 ["replay", "--run-id", "x", "--lease", "inf", "loop1"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("blkfleet: "), (argv, err)
    run_id = run_ids()
    path = Path(private_dir(os.path.join(job.RUN_ROOT, run_id)))
    (path / "run.json").write_bytes(b"\xff\xfe not json")
    assert main(["job", "status", run_id]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    os.chmod(path, 0o777)
    assert main(["job", "status", run_id]) == 2
    assert "refusing this run directory" in capsys.readouterr().err


def test_status_of_an_unknown_run_is_none(run_ids, capsys):
    run_id = run_ids()
    assert main(["job", "status", run_id]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "none" and doc["pid"] is None
    assert not os.path.exists(os.path.join(job.RUN_ROOT, run_id))  # status creates nothing


def test_old_finished_runs_are_pruned_at_replay_start(tmp_path, loopdev, run_ids):
    old, dead, fresh = run_ids(), run_ids(), run_ids()
    forge(old, os.getpid(), state="finished", exit_code=0)
    forge(dead, os.getpid())  # "running", but its command line does not name it: dead
    forge(fresh, os.getpid(), state="finished", exit_code=0)
    two_days_ago = time.time() - 2 * 86400
    for run_id in (old, dead):
        os.utime(os.path.join(job.RUN_ROOT, run_id, "run.json"), (two_days_ago, two_days_ago))
    proc, _res = start_replay(tmp_path, loopdev(64 << 20), run_ids(), seconds=0.5)
    assert proc.wait(timeout=30) == 0
    assert not os.path.exists(os.path.join(job.RUN_ROOT, old))
    assert not os.path.exists(os.path.join(job.RUN_ROOT, dead))
    assert os.path.exists(os.path.join(job.RUN_ROOT, fresh, "run.json"))


def test_pruning_reads_only_the_runs_old_enough_to_go(run_ids, monkeypatch):
    """Every replay start prunes: it must not read every run of the last day (300 runs left by a day of tests
    had made each start 50 ms slower)."""
    recent = [run_ids() for _ in range(40)]
    old = run_ids()
    for run_id in [*recent, old]:
        forge(run_id, os.getpid(), state="finished", exit_code=0)
    two_days_ago = time.time() - 2 * 86400
    os.utime(os.path.join(job.RUN_ROOT, old, "run.json"), (two_days_ago, two_days_ago))
    loaded = []
    real_load = job._load
    monkeypatch.setattr(job, "_load", lambda run_id: loaded.append(run_id) or real_load(run_id))
    job.prune()
    assert old in loaded and not set(recent) & set(loaded)
    assert not os.path.exists(os.path.join(job.RUN_ROOT, old))
    assert all(os.path.exists(os.path.join(job.RUN_ROOT, r, "run.json")) for r in recent)


def test_a_killed_engine_is_dead_and_its_id_can_start_again(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    target = loopdev(64 << 20)
    proc, _res = start_replay(tmp_path, target, run_id)
    proc.kill()
    proc.wait(timeout=10)
    doc = job_cmd("status", run_id)
    assert doc["state"] == "dead" and doc["pid"] == proc.pid and "is gone" in doc["problem"]
    assert job_cmd("stop", run_id)["stopped"] is False
    again, _res = start_replay(tmp_path, target, run_id, seconds=0.5)
    assert again.wait(timeout=30) == 0
    assert job_cmd("status", run_id)["state"] == "finished"


def test_a_stop_before_the_replay_starts_is_recorded(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    proc, _res = start_replay(tmp_path, loopdev(64 << 20), run_id, "--start-at", str(time.time() + 3600))
    doc = job_cmd("stop", run_id)
    assert doc["stopped"] is True and doc["state"] == "finished" and doc["exit_code"] == 130
    assert proc.wait(timeout=10) == 130


def test_a_lease_that_expires_before_the_start_stops_it(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    proc, res = start_replay(tmp_path, loopdev(64 << 20), run_id, "--lease", "0.001", seconds=1.0)
    assert proc.wait(timeout=20) == 4, proc.stderr.read()
    doc = json.loads(res.read_text())
    assert doc["stop_reason"] == "lease expired" and doc["interrupted"] and doc["total"]["ios"] == 0


def test_a_second_writer_names_the_run_of_the_first(tmp_path, loopdev, run_ids):
    run_id = run_ids()
    target = loopdev(64 << 20)
    proc, _res = start_replay(tmp_path, target, run_id, "-W")
    try:
        code, _out, err = blkfleet("replay", "-d", tmp_path, "-M", map_file(tmp_path, target), "-W", "loop1")
        assert code == 2 and f"(pid {proc.pid}, started 20" in err and f", run {run_id})" in err, err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

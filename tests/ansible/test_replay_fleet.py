"""playbooks/replay.yml on namespace hosts with their own sshd (tests/netns/netns_hosts.py), for real: both targets
start at one instant after both armed; a target that never arms starts none; a target whose link goes down
mid-replay holds the play no longer than the trace's duration plus a margin, the other target's results are fetched
and valid, report.json names the failed target and why, and the lost target's engine stops by itself when its lease
runs out. Results fetched onto a full tmpfs on the controller never leave a truncated file under its final name."""

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env, netns_inventory_head

pytestmark = [pytest.mark.root, pytest.mark.slow]

HELPER = os.path.join(REPO, "tests", "netns", "netns_hosts.py")
SET, SUBNET = "rpf", "10.231.4.0/24"
RANDMIX = os.path.join(REPO, "tests", "data", "randmix")  # 2,000 IOs in 36.8 ms
ACC = 0.002  # slowed 500 times: an 18.4 s replay
TRACE_S = 0.036819131 / ACC
RUN_ROOT = "/run/blkfleet/replay"


def helper(*args):
    return subprocess.run([sys.executable, HELPER, *args, "--set", SET], capture_output=True, text=True, timeout=120)


def blkfleet(*args, check=True):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *args], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "engine")))
    assert not check or run.returncode == 0, run.stderr
    return run


@contextlib.contextmanager
def small_tmpfs(size):
    where = tempfile.mkdtemp(prefix="blkfleet-tmpfs-", dir="/dev/shm")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=False)
        os.rmdir(where)


@pytest.fixture(scope="module")
def fleet():
    """Two namespace hosts t1, t2 (each with a 64 MiB loop device on tmpfs), the randmix bundle, an inventory."""
    if not os.path.exists("/usr/sbin/sshd") or os.geteuid() != 0:
        pytest.skip("needs root and openssh-server")
    work = tempfile.mkdtemp(prefix="blkfleet-fleet-", dir="/dev/shm")
    loops = []
    try:
        up = helper("up", "--count", "2", "--subnet", SUBNET)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        for name in ("t1", "t2"):
            backing = os.path.join(work, f"{name}.img")
            with open(backing, "wb") as f:
                f.truncate(64 << 20)
            loops.append(subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                                        check=True).stdout.strip())
        os.mkdir(os.path.join(work, "replay"))
        blkfleet("record", "-q", "-d", RANDMIX, "-D", os.path.join(work, "replay"), "-F")
        bundle = os.path.join(work, "randmix.bundle")
        blkfleet("bundle", "create", "-d", os.path.join(work, "replay"), "-o", bundle, "-F")
        hosts = "".join(
            f"        {name}: {{ansible_host: {host['address']}, replay_device_map: {{loop1: {loop}}},"
            f" replay_results_path: {work}/{name}-replay.json}}\n"
            for name, host, loop in zip(("t1", "t2"), info["hosts"], loops))
        inventory = os.path.join(work, "hosts.yml")
        with open(inventory, "w") as f:
            f.write(netns_inventory_head(info) + "  children:\n    targets:\n      hosts:\n" + hosts)
        yield {"work": work, "info": info, "inventory": inventory, "bundle": bundle, "loops": loops}
    finally:
        down = helper("down")
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(work, ignore_errors=True)
        assert down.returncode == 0, down.stderr


@pytest.fixture
def token(request):
    """A run ID for the test; its job directories under /run/blkfleet/replay are removed afterwards."""
    value = f"{request.node.name[5:8]}{os.getpid()}"
    yield value
    for name in os.listdir(RUN_ROOT) if os.path.isdir(RUN_ROOT) else ():
        if name.startswith(value + "-"):
            shutil.rmtree(os.path.join(RUN_ROOT, name), ignore_errors=True)


def run_state(job_id):
    try:
        with open(os.path.join(RUN_ROOT, job_id, "run.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def test_lost_target_does_not_hold_the_play(fleet, token):
    fetch_dir = os.path.join(fleet["work"], "replays")
    extra = {"replay_bundle_file": fleet["bundle"], "replay_fetch_dir": fetch_dir, "replay_acc_factor": ACC,
             "replay_lease": 8, "replay_run_id": token}
    argv = [ansible_bin("ansible-playbook"), "-i", fleet["inventory"], "playbooks/replay.yml", "-e", json.dumps(extra)]
    log = open(os.path.join(fleet["work"], "play.log"), "w+")
    play = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=ansible_env())
    try:
        # take t2's link down a few seconds into its replay
        deadline = time.monotonic() + 120
        while (run_state(f"{token}-t2") or {}).get("state") != "running":
            assert play.poll() is None and time.monotonic() < deadline, open(log.name).read()[-4000:]
            time.sleep(0.2)
        started = time.time()
        time.sleep(3)  # 3 s of replay
        subprocess.run(["ip", "link", "set", f"{SET}-h2", "down"], check=True)
        link_down = time.time()
        rc = play.wait(timeout=TRACE_S + 300)
        play_end = time.time()
    finally:
        if play.poll() is None:
            play.kill()
        subprocess.run(["ip", "link", "set", f"{SET}-h2", "up"], check=False)
    log.seek(0)
    out = log.read()
    assert rc != 0 and "t1                         : ok=" in out, out[-6000:]

    with open(os.path.join(fetch_dir, "report.json")) as f:
        report = json.load(f)
    start_at = float(report["start_at"])
    elapsed = play_end - start_at
    print(f"\nplay ended {elapsed:.1f} s after the replay start (trace {TRACE_S:.1f} s); link down "
          f"{link_down - start_at:.1f} s into it")
    assert elapsed <= TRACE_S + 60, out[-6000:]

    # t1: fetched, valid, every IO replayed
    assert report["targets"]["t1"]["outcome"] == "ok" and "t1" not in report["failed_targets"]
    results = os.path.join(fetch_dir, "t1.json")
    blkfleet("results", "add", "--db", os.path.join(fleet["work"], "check.sqlite"), "--", results)
    with open(results) as f:
        doc = json.load(f)
    assert doc["total"]["ios"] == 2000 and doc["total"]["errors"]["count"] == 0 and not doc["interrupted"]
    assert report["targets"]["t1"]["ios"] == 2000

    # t2: reported failed, with the reason; nothing fetched for it
    assert report["failed_targets"]["t2"]["outcome"] == "unreachable", report
    assert "no answer from the host" in report["failed_targets"]["t2"]["reason"]
    assert not os.path.exists(os.path.join(fetch_dir, "t2.json"))
    assert "replay on t2: unreachable" in out

    # t2's engine stopped by itself once its lease ran out (no controller renewed it)
    state = run_state(f"{token}-t2")
    assert state["state"] == "finished" and state["exit_code"] == 4 and state["stop_reason"] == "lease expired"
    lost = finished_epoch(state) - link_down
    print(f"t2 stopped by its lease {lost:.1f} s after its link went down; reason reported: "
          f"{report['failed_targets']['t2']['reason']}")
    assert lost <= 8 + 5, (lost, started)


def start_play(fleet, token, *args, **extra):
    """``ansible-playbook playbooks/replay.yml`` in the background; returns (Popen, log file, fetch dir)."""
    fetch_dir = os.path.join(fleet["work"], f"replays-{token}")
    variables = {"replay_bundle_file": fleet["bundle"], "replay_fetch_dir": fetch_dir, "replay_acc_factor": ACC,
                 "replay_run_id": token}
    variables.update(extra)
    argv = [ansible_bin("ansible-playbook"), "-i", fleet["inventory"], "playbooks/replay.yml",
            "-e", json.dumps(variables), *args]
    log = open(os.path.join(fleet["work"], f"play-{token}.log"), "w+")
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=ansible_env()), log, fetch_dir


def wait_running(play, log, *job_ids, timeout=120):
    deadline = time.monotonic() + timeout
    while any((run_state(j) or {}).get("state") != "running" for j in job_ids):
        assert play.poll() is None and time.monotonic() < deadline, open(log.name).read()[-4000:]
        time.sleep(0.2)


def finished_epoch(state):
    return datetime.datetime.fromisoformat(state["finished"]).timestamp()


def test_interrupted_play_leaves_no_replay_running(fleet, token):
    """Ctrl-C of ansible-playbook runs no always section: the lease stops the replays (writes included)."""
    play, log, _ = start_play(fleet, token, replay_lease=6, replay_write_enable=True)
    try:
        wait_running(play, log, f"{token}-t1", f"{token}-t2")
        time.sleep(2)  # 2 s of writes
        play.send_signal(signal.SIGINT)
        interrupted = time.time()
        play.wait(timeout=60)
    finally:
        if play.poll() is None:
            play.kill()
    deadline = time.time() + 30
    states = {}
    for host in ("t1", "t2"):
        while (run_state(f"{token}-{host}") or {}).get("state") != "finished" and time.time() < deadline:
            time.sleep(0.2)
        states[host] = run_state(f"{token}-{host}")
    for host, state in states.items():
        assert state["state"] == "finished" and state["stop_reason"] == "lease expired", (host, state)
        assert state["exit_code"] == 4
        stopped_after = finished_epoch(state) - interrupted
        print(f"\n{host}: stopped by its lease {stopped_after:.1f} s after the play was interrupted "
              f"(trace {TRACE_S:.1f} s)")
        assert stopped_after <= 6 + 3
        with open(state["results"]) as f:
            doc = json.load(f)
        assert doc["interrupted"] and doc["total"]["ios"] < 2000 and doc["write_enable"]


def test_replay_still_running_at_the_bound_is_stopped(fleet, token):
    play, log, fetch_dir = start_play(fleet, token, "--limit", "t1", replay_wait_timeout=12)
    rc = play.wait(timeout=180)
    log.seek(0)
    out = log.read()
    assert rc != 0 and "replay on t1: timed_out" in out, out[-4000:]
    with open(os.path.join(fetch_dir, "report.json")) as f:
        report = json.load(f)
    assert report["failed_targets"]["t1"]["outcome"] == "timed_out"
    assert "stopped, partial results" in report["failed_targets"]["t1"]["reason"]
    state = run_state(f"{token}-t1")
    assert state["state"] == "finished" and state["exit_code"] == 130 and state["stop_reason"] == "SIGTERM"
    with open(os.path.join(fetch_dir, "t1.json")) as f:  # the partial results are fetched and reported
        doc = json.load(f)
    assert doc["interrupted"] and 0 < doc["total"]["ios"] < 2000
    assert report["targets"]["t1"]["ios"] == doc["total"]["ios"]


def digest(dev):
    with open(dev, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_targets_start_at_one_instant_after_both_armed(fleet, token):
    play, log, fetch_dir = start_play(fleet, token, replay_acc_factor=0.05)
    rc = play.wait(timeout=300)
    log.seek(0)
    out = log.read()
    assert rc == 0, out[-4000:]
    with open(os.path.join(fetch_dir, "report.json")) as f:
        report = json.load(f)
    docs = {}
    for host in ("t1", "t2"):
        with open(os.path.join(fetch_dir, f"{host}.json")) as f:
            docs[host] = json.load(f)
    starts = [d["start"] for d in docs.values()]
    at = float(report["start_at"])
    armed = [run_state(f"{token}-{host}")["armed_at"] for host in ("t1", "t2")]
    print(f"\nstart {at:.6f}: {at - max(armed):.3f} s after the last target armed; start instants "
          f"{[round(s['wall'] - at, 6) for s in starts]}, first IOs "
          f"{[round(s['first_submit_wall'] - at, 6) for s in starts]}")
    assert all(float(s["requested"]) == at for s in starts) and max(armed) < at
    # none late; bench/fleet_bench.py holds the 1 ms / 2 ms skew targets on a quiet host
    assert all(abs(s["wall"] - at) < 0.005 for s in starts)
    assert report["start_wall_skew_s"] < 0.005 and report["start_skew_s"] < 0.010
    assert all(d["total"]["ios"] == 2000 and d["total"]["errors"]["count"] == 0 for d in docs.values())


def test_a_target_that_never_arms_starts_none(fleet, token):
    """t2's target holds a filesystem and the replay writes: its engine refuses it and never arms, so t1, armed, is
    not started (nothing written) but stopped, and the report says why for both."""
    t1, t2 = fleet["loops"]
    subprocess.run(["mkfs.ext4", "-q", "-F", t2], check=True)
    before = digest(t1)
    try:
        play, log, fetch_dir = start_play(fleet, token, replay_write_enable=True, replay_arm_timeout=60)
        rc = play.wait(timeout=300)
    finally:
        subprocess.run(["wipefs", "-a", "-q", t2], check=True)
    log.seek(0)
    out = log.read()
    assert rc != 0 and os.path.exists(os.path.join(fetch_dir, "report.json")), out[-6000:]
    with open(os.path.join(fetch_dir, "report.json")) as f:
        report = json.load(f)
    failed = report["failed_targets"]
    assert failed["t2"]["outcome"] == "failed" and "refusing to write" in failed["t2"]["reason"], failed
    assert failed["t1"]["outcome"] == "failed" and failed["t1"]["reason"].startswith("not started: t2 did not arm: ")
    assert "refusing to write" in failed["t1"]["reason"]
    assert "replay on t1: failed: not started: t2 did not arm" in out
    assert digest(t1) == before  # t1 wrote nothing
    state = run_state(f"{token}-t1")
    assert state["state"] == "finished" and state["exit_code"] == 130 and state["armed_at"] is not None
    assert state["stop_reason"] == "stopped by SIGTERM while armed: nothing replayed" and state["start_at"] is None
    assert run_state(f"{token}-t2")["exit_code"] == 2
    assert not os.path.exists(os.path.join(fetch_dir, "t1.json"))


def test_check_mode_replays_nothing(fleet, token):
    play, log, fetch_dir = start_play(fleet, token, "--check", replay_write_enable=True)
    rc = play.wait(timeout=180)
    log.seek(0)
    out = log.read()
    assert rc == 0, out[-4000:]
    assert "TASK [blkfleet.core.replay : Launch the replay in the background" in out and "failed=0" in out
    assert not [n for n in os.listdir(RUN_ROOT) if n.startswith(token + "-")]  # no job was started
    assert not os.path.exists(fetch_dir)  # nothing fetched, no report written


def fetch_adhoc(fleet, host, src, dest):
    run = subprocess.run([ansible_bin("ansible"), host, "-i", fleet["inventory"], "-m", "blkfleet.core.verified_fetch",
                          "-a", json.dumps({"src": src, "dest": dest, "validate": "results"})],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=ansible_env())
    return run


def pages(nbytes):
    return -(-nbytes // 4096)


def test_fetch_onto_a_full_controller_disk(fleet):
    """Results fetched over SSH onto a tmpfs with less room than they need: the task fails, the destination keeps
    what it held (nothing, or the previous results), no temporary file is left; with room, they are fetched."""
    with open(os.path.join(fleet["work"], "map"), "w") as f:
        f.write(f"loop1 {fleet['loops'][0]}\n")
    src, other = (os.path.join(fleet["work"], name) for name in ("results-1.json", "results-4.json"))
    for path, iterations in ((src, "1"), (other, "4")):
        blkfleet("replay", "--bundle", fleet["bundle"], "-M", os.path.join(fleet["work"], "map"), "-I", iterations,
                 "--json", path, "--", "loop1")
    p_src, p_other = pages(os.path.getsize(src)), pages(os.path.getsize(other))
    assert p_src >= 2 and p_other >= 2
    total = p_src + p_other + 1
    with small_tmpfs(f"{total * 4}k") as d:
        filler, dest = os.path.join(d, "filler"), os.path.join(d, "t1.json")
        with open(filler, "wb") as f:
            f.write(b"x" * 4096 * (total - p_src + 1))  # room for all but one page of the results
        run = fetch_adhoc(fleet, "t1", src, dest)
        assert run.returncode != 0 and "No space left on device" in run.stdout, run.stdout
        assert os.listdir(d) == ["filler"]  # no truncated file under the final name, no temporary one

        # previous results in place, and room for all but one page of the new ones beside them: they stay whole
        os.unlink(filler)
        shutil.copyfile(src, dest)
        with open(filler, "wb") as f:
            f.write(b"x" * 4096 * (total - p_src - p_other + 1))
        run = fetch_adhoc(fleet, "t1", other, dest)
        assert run.returncode != 0 and "No space left on device" in run.stdout, run.stdout
        with open(dest, "rb") as f, open(src, "rb") as g:
            assert f.read() == g.read()
        assert sorted(os.listdir(d)) == ["filler", "t1.json"]

        # room again: fetched, checked and renamed; a second fetch changes nothing
        os.unlink(filler)
        run = fetch_adhoc(fleet, "t1", other, dest)
        assert run.returncode == 0 and "CHANGED" in run.stdout, run.stdout
        with open(dest, "rb") as f, open(other, "rb") as g:
            assert f.read() == g.read()
        run = fetch_adhoc(fleet, "t1", other, dest)
        assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout

    # a file that is not a results document is refused and not kept
    bad = os.path.join(fleet["work"], "not-results.json")
    with open(bad, "w") as f:
        json.dump({"schema": "something-else"}, f)
    dest = os.path.join(fleet["work"], "fetched", "bad.json")
    run = fetch_adhoc(fleet, "t1", bad, dest)
    assert run.returncode != 0 and "not a valid results document" in run.stdout, run.stdout
    assert os.listdir(os.path.dirname(dest)) == []

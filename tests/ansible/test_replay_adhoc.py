"""blkfleet.core.btreplay run ad hoc (the real ``ansible`` program, the real engine, real loop devices): device names
never turn into engine options, and a replay that fails after it wrote reports a change."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.adhoc import REPO

pytestmark = [pytest.mark.root]

RANDMIX = os.path.join(REPO, "tests", "data", "randmix")  # loop1: 2,000 random 4 KiB IOs (831 writes) in 37 ms


def blkfleet(*args):
    run = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "blkfleet", *args],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "engine")))
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def pushed():
    """The randmix trace recorded into a bundle and pushed (blkfleet.core.replay_bundle) into private directories."""
    work = tempfile.mkdtemp(prefix="blkfleet-adhoc-replay-")
    try:
        os.mkdir(os.path.join(work, "replay"))
        blkfleet("record", "-q", "-d", RANDMIX, "-D", os.path.join(work, "replay"), "-F")
        bundle = os.path.join(work, "randmix.bundle")
        blkfleet("bundle", "create", "-d", os.path.join(work, "replay"), "-o", bundle, "-F")
        yield {"work": work, "bundle": bundle, "dest": os.path.join(work, "bundles"),
               "engine_root": os.path.join(work, "engines")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def push(adhoc, pushed):
    rc, result, run = adhoc("blkfleet.core.replay_bundle", json.dumps(
        {"src": pushed["bundle"], "dest": pushed["dest"], "engine_root": pushed["engine_root"]}))
    assert rc == 0, run.stdout + run.stderr
    return result["bundle_id"]


@contextlib.contextmanager
def loop_on(directory, size=64 << 20, fill=None):
    backing = os.path.join(directory, "disk.img")
    with open(backing, "wb") as f:
        if fill is None:
            f.truncate(size)
        else:
            f.write(fill * size)
    attach = subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True, check=True)
    dev = attach.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def small_tmpfs(size):
    """A real tmpfs of ``size`` (e.g. '256k'), unmounted afterwards."""
    where = tempfile.mkdtemp(prefix="blkfleet-tmpfs-", dir="/dev/shm")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=False)
        os.rmdir(where)


def digest(dev):
    with open(dev, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def replay_args(pushed, bundle_id, **extra):
    args = {"bundle_id": bundle_id, "bundle_dir": pushed["dest"], "engine_root": pushed["engine_root"],
            "results_path": os.path.join(pushed["work"], "results.json")}
    args.update(extra)
    return json.dumps(args)


def test_device_names_never_become_options(adhoc, pushed):
    bundle_id = push(adhoc, pushed)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d, loop_on(d, fill=b"\xab") as dev:
        before = digest(dev)
        rc, result, run = adhoc("blkfleet.core.btreplay", replay_args(
            pushed, bundle_id, devices=["loop1", "-W", "--force"], device_map={"loop1": dev}, write_enable=False))
        assert rc != 0 and "FAILED" in run.stdout, run.stdout
        assert result["msg"].startswith("invalid recorded device name '-W'")
        assert result["error"]["code"] == "invalid_input"
        assert digest(dev) == before  # nothing was written
        rc, result, run = adhoc("blkfleet.core.btreplay", replay_args(
            pushed, bundle_id, device_map={"loop1": f"{dev} -W"}))
        assert rc != 0 and "one word each" in result["msg"], run.stdout
        assert digest(dev) == before


@pytest.mark.parametrize("bad, message", [
    ({"acc_factor": -1}, "acc_factor must be a number > 0"), ({"acc_factor": 0}, "acc_factor must be a number > 0"),
    ({"acc_factor": "nan"}, "acc_factor must be a number > 0"), ({"iterations": 0}, "iterations must be >= 1"),
    ({"cpus": -1}, "cpus must be 0 (one worker per recorded CPU) or 1.."),
    ({"cpus": 4096}, "cpus must be 0 (one worker per recorded CPU) or 1.."),
    ({"run_id": "r1", "lease": 0}, "lease must be a number > 0"),
    ({"run_id": "r1", "arm": -5}, "arm must be a number > 0"),
])
def test_check_mode_refuses_what_the_engine_refuses(adhoc, pushed, bad, message):
    """Check mode predicted success for acc_factor=-1, which the engine refuses: the module checks its numbers as
    the engine does, in check mode and out of it, before anything runs."""
    bundle_id = push(adhoc, pushed)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d, loop_on(d) as dev:
        for check in (True, False):
            rc, result, run = adhoc("blkfleet.core.btreplay", replay_args(pushed, bundle_id, device_map={"loop1": dev},
                                                                          **bad), check=check)
            assert rc != 0 and result["msg"].startswith(message), run.stdout
            assert not os.path.exists(os.path.join(pushed["work"], "results.json"))


def test_failure_after_writes_is_a_change(adhoc, pushed):
    """A target over a sparse file on a full tmpfs: the writes that need new pages fail (exit 3) after others landed."""
    bundle_id = push(adhoc, pushed)
    with small_tmpfs("256k") as d, loop_on(d) as dev:
        rc, result, run = adhoc("blkfleet.core.btreplay", replay_args(
            pushed, bundle_id, device_map={"loop1": dev}, write_enable=True))
    assert rc != 0 and "FAILED" in run.stdout and result["rc"] == 3, run.stdout
    assert result["changed"] is True and result["error"]["code"] == "io_errors"
    total = result["replay_results"]["total"]
    assert 0 < total["errors"]["count"] < 831 and total["ios"] == 2000


def test_record_onto_a_full_disk_writes_nothing(adhoc):
    """btrecord into a tmpfs with room for the first replay file only: the task fails and no file of the conversion
    is left (before, the first file stayed without the second and without record.json)."""
    with small_tmpfs("48k") as d:
        replay_dir = os.path.join(d, "replay")
        rc, result, run = adhoc("blkfleet.core.btrecord", json.dumps({"trace_dir": RANDMIX, "replay_dir": replay_dir}))
        assert rc != 0 and "No space left on device" in result["msg"], run.stdout
        assert os.listdir(replay_dir) == []
    with small_tmpfs("1m") as d:  # with room, the same conversion is written whole
        replay_dir = os.path.join(d, "replay")
        rc, result, run = adhoc("blkfleet.core.btrecord", json.dumps({"trace_dir": RANDMIX, "replay_dir": replay_dir}))
        assert rc == 0 and result["changed"], run.stdout
        assert sorted(os.listdir(replay_dir)) == ["loop1.replay.0", "loop1.replay.1", "record.json"]

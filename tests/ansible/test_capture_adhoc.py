"""blkfleet.core.blktrace (and engine, replay_bundle) through the real ``ansible`` program on loop devices."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def engine_path():
    from helpers.adhoc import run_adhoc

    rc, result, run = run_adhoc("blkfleet.core.engine")
    assert rc == 0, run.stdout + run.stderr
    return result["path"]


def write_some(dev):
    subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4k", "count=256", "oflag=direct"], check=True,
                   capture_output=True)


@pytest.mark.parametrize("module", ["blkfleet.core.blktrace", "blktrace"])
def test_start_stop_idempotent_and_check_mode(adhoc, loopdev, tmp_path, engine_path, module):
    dev = loopdev(16 << 20)
    out = tmp_path / "cap"
    common = f"output_dir={out} engine={engine_path}"
    start = f"devices={dev} state=started busy_timeout=600 {common}"

    rc, result, run = adhoc(module, start, check=True)
    assert rc == 0 and result["changed"] is True and result["state"] == "none", run.stdout + run.stderr
    assert not (out / "capture.json").exists()

    rc, result, run = adhoc(module, start)
    try:
        assert rc == 0, run.stdout + run.stderr
        assert result["changed"] is True and result["state"] == "running"
        assert result["capture"]["started"] is True and result["capture"]["devices"] == [os.path.basename(dev)]

        rc, result, run = adhoc(module, start)  # started twice: nothing to do
        assert rc == 0 and result["changed"] is False and result["state"] == "running", run.stdout

        write_some(dev)
        rc, result, run = adhoc(module, f"state=stopped {common}", check=True)
        assert rc == 0 and result["changed"] is True and result["state"] == "running", run.stdout
    finally:
        rc, result, run = adhoc(module, f"state=stopped {common}")
    assert rc == 0, run.stdout + run.stderr
    assert result["changed"] is True and result["state"] == "stopped"
    assert result["queued"] >= 256 and result["drops"] == 0
    assert result["files"]
    assert all(os.path.exists(f) for f in result["files"])
    assert result["capture"]["devices"][os.path.basename(dev)]["queued"] == result["queued"]

    rc, result, run = adhoc(module, f"state=stopped {common}")  # stopped twice: same summary, no change
    assert rc == 0 and result["changed"] is False and result["state"] == "stopped", run.stdout


def test_stop_without_capture_and_bad_device(adhoc, tmp_path, engine_path):
    rc, result, run = adhoc("blktrace", f"state=stopped output_dir={tmp_path / 'none'} engine={engine_path}")
    assert rc == 0 and result["changed"] is False and result["state"] == "none", run.stdout
    rc, result, run = adhoc("blkfleet.core.blktrace", f"devices=/dev/blkfleet-nope output_dir={tmp_path / 'x'} "
                            f"engine={engine_path}")
    assert rc == 2 and result["msg"].startswith("no such block device: /dev/blkfleet-nope")
    assert "\n" not in result["msg"] and not result["msg"].startswith("blkfleet:")


def test_engine_and_bundle_push_are_idempotent(adhoc, engine_path, tmp_path):
    rc, result, run = adhoc("blkfleet.core.engine")
    assert rc == 0 and result["changed"] is False and result["path"] == engine_path, run.stdout
    rc, result, run = adhoc("blkfleet.core.engine", check=True)
    assert rc == 0 and result["changed"] is False

    # a bundle of the test fixture's replay files, pushed to a scratch directory
    replay = tmp_path / "replay"
    replay.mkdir()
    subprocess.run([sys.executable, "-m", "blkfleet", "record", "-q", "-F", "-d",
                    os.path.join(os.path.dirname(__file__), "..", "data", "seqlarge"), "-D", str(replay)],
                   check=True, env=dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..",
                                                                            "engine")))
    dest = tmp_path / "bundles"
    args = f"replay_dir={replay} dest={dest} engine_root={tmp_path / 'engines'}"
    rc, result, run = adhoc("blkfleet.core.replay_bundle", args, check=True)
    assert rc == 0 and result["changed"] is True and not dest.exists(), run.stdout + run.stderr
    rc, result, run = adhoc("blkfleet.core.replay_bundle", args)
    assert rc == 0 and result["changed"] is True, run.stdout + run.stderr
    assert result["path"] == str(dest / (result["bundle_id"] + ".tar")) and os.path.isfile(result["path"])
    assert os.path.isfile(result["engine"])
    rc, again, run = adhoc("blkfleet.core.replay_bundle", args)
    assert rc == 0 and again["changed"] is False and again["bundle_id"] == result["bundle_id"], run.stdout

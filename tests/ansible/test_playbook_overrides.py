"""The playbooks' documented overrides, run for real from the checkout (root, a loop device on tmpfs): replay.yml
takes its default bundle from the group named by ``-e blkfleet_sources=GROUP``; a relative ``replay_bundle_file``
or ``regression_bundle`` is taken from the project's root (not from playbooks/, where Ansible looks by default)."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env

pytestmark = [pytest.mark.root, pytest.mark.slow]

RANDMIX = os.path.join(REPO, "tests", "data", "randmix")  # 2,000 IOs of loop1 in 36.8 ms


def blkfleet(*args):
    run = subprocess.run([ansible_bin("blkfleet"), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def work():
    """A bundle of randmix under WORK/bundles/randmix.bundle, a 64 MiB loop device, an inventory whose group
    ``caps`` holds the (never contacted) source ``randmix`` and whose group ``tgts`` holds localhost."""
    path = tempfile.mkdtemp(prefix="blkfleet-overrides-", dir="/dev/shm")
    loop = None
    try:
        os.mkdir(os.path.join(path, "bundles"))
        os.mkdir(os.path.join(path, "loops"))
        os.mkdir(os.path.join(path, "replay"))
        blkfleet("record", "-q", "-d", RANDMIX, "-D", os.path.join(path, "replay"), "-F")
        blkfleet("bundle", "create", "-d", os.path.join(path, "replay"), "-o",
                 os.path.join(path, "bundles", "randmix.bundle"), "-F")
        backing = os.path.join(path, "target.img")
        with open(backing, "wb") as f:
            f.truncate(64 << 20)
        loop = subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                              check=True).stdout.strip()
        inventory = os.path.join(path, "hosts.yml")
        with open(inventory, "w") as f:
            f.write("all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: /usr/bin/python3\n"
                    "  children:\n    caps:\n      hosts:\n        randmix: {}\n"
                    f"    tgts:\n      hosts:\n        localhost:\n          replay_device_map: {{loop1: {loop}}}\n"
                    f"          replay_results_path: {path}/replay-results.json\n")
        yield {"path": path, "inventory": inventory, "loop": loop}
    finally:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(path, ignore_errors=True)


def play(*argv):
    program = ansible_bin("ansible-playbook")
    assert program, "ansible-playbook is not installed"
    return subprocess.run([program, *argv], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=ansible_env())


def replay_play(work, fetch, **variables):
    variables.update({"blkfleet_targets": "tgts", "replay_fetch_dir": fetch, "replay_acc_factor": 0.5})
    return play("-i", work["inventory"], "playbooks/replay.yml", "-e", json.dumps(variables))


def fetched_ios(fetch):
    with open(os.path.join(fetch, "localhost.json")) as f:
        return json.load(f)["total"]["ios"]


def test_replay_takes_the_default_bundle_from_blkfleet_sources(work):
    fetch = os.path.join(work["path"], "fetch-sources")
    run = replay_play(work, fetch, blkfleet_sources="caps", blkfleet_work_dir=work["path"])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert fetched_ios(fetch) > 0


def test_replay_takes_a_relative_bundle_file_from_the_project_root(work):
    fetch = os.path.join(work["path"], "fetch-relative")
    relative = os.path.relpath(os.path.join(work["path"], "bundles", "randmix.bundle"), REPO)
    assert not os.path.isabs(relative) and not os.path.exists(os.path.join(REPO, "playbooks", relative))
    run = replay_play(work, fetch, replay_bundle_file=relative)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert fetched_ios(fetch) > 0


def test_regression_takes_a_relative_bundle_from_the_project_root(work):
    results = os.path.join(work["path"], "regression")
    relative = os.path.relpath(os.path.join(work["path"], "bundles", "randmix.bundle"), REPO)
    run = play("playbooks/regression.yml", "-e", json.dumps({
        "regression_bundle": relative, "regression_results_dir": results, "regression_iterations": 1,
        "regression_baseline_runs": 1, "regression_min_samples": 1,
        "regression_loop_dir": os.path.join(work["path"], "loops")}))
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    with open(os.path.join(results, "regression", "randmix", "latest", "verdict.md")) as f:
        assert f.read().startswith("# Baseline randmix created")
    assert os.listdir(os.path.join(results, "regression", "randmix", "runs"))

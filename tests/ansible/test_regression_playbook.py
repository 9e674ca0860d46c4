"""The real ``ansible-playbook playbooks/regression.yml`` (root, loop devices), from a checkout: the first run makes
the baseline, the second passes, the third, replayed onto a loop device throttled by a cgroup v1 blkio limit of
1,000 read IOPS (the whole ansible-playbook process tree in the cgroup), regresses and fails the play."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from blkfleet.results.store import Store
from helpers import blkio, postgres
from helpers.adhoc import REPO, ansible_bin, ansible_env

pytestmark = [pytest.mark.root, pytest.mark.slow]

ITERATIONS = 3


def loops(results_dir):
    """The loop devices backed by files under this test's loop directory."""
    run = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    return [line for line in run.stdout.splitlines() if loop_dir(results_dir) + "/" in line]


def leftovers(results_dir):
    return os.listdir(loop_dir(results_dir))


def loop_dir(results_dir):
    return os.path.join(results_dir, "loops")


@pytest.fixture(scope="module")
def results_dir():
    """The results, and the role's loop directory beside them: what other runs left on the host is not seen."""
    path = tempfile.mkdtemp(prefix="blkfleet-regression-test-", dir="/dev/shm")
    os.mkdir(loop_dir(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def playbook(results_dir, *extra, wrap=None, env=None):
    program = ansible_bin("ansible-playbook")
    assert program, "ansible-playbook is not installed"
    argv = [program, "playbooks/regression.yml", "-e", f"regression_results_dir={results_dir}",
            "-e", f"regression_iterations={ITERATIONS}",
            "-e", f"regression_loop_dir={loop_dir(results_dir)}", *extra]
    if wrap:
        argv = wrap(argv)
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=ansible_env(**(env or {})))


def latest(results_dir, name):
    with open(os.path.join(results_dir, "regression", "randmix", "latest", name)) as f:
        return f.read()


def test_first_run_makes_the_baseline_then_a_run_passes(results_dir):
    run = playbook(results_dir)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "Baseline randmix created" in latest(results_dir, "verdict.md")
    runs = os.listdir(os.path.join(results_dir, "regression", "randmix", "runs", "localhost"))
    assert len(runs) == 3  # regression_baseline_runs
    assert os.path.exists(os.path.join(results_dir, "blkfleet.sqlite"))

    run = playbook(results_dir)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    verdict = json.loads(latest(results_dir, "verdict.json"))
    assert verdict["exit_code"] == 0 and verdict["counts"]["regression"] == 0
    assert verdict["counts"]["insufficient"] == 0
    group = verdict["groups"][0]
    assert group["device"] == "loop1" and group["baseline_runs"] == [1, 2, 3] and group["candidate_runs"] == [4]
    assert "blkfleet regress: PASS" in latest(results_dir, "verdict.md")
    html = latest(results_dir, "report.html")
    for plot in ("iops_over_time", "latency_cdf", "trend_iops", "trend_latency_p99"):
        assert f'data-plot="{plot}"' in html
    # the loop devices made for the runs are gone
    assert loops(results_dir) == [] and leftovers(results_dir) == []


def test_throttled_target_fails_the_play(results_dir, loopdev):
    reason = blkio.skip_reason()
    if reason:
        pytest.skip(reason)
    if not os.path.exists(os.path.join(results_dir, "blkfleet.sqlite")):
        pytest.skip("needs the baseline of the previous test")
    device = loopdev(256 << 20)
    with blkio.throttle(device, 1000) as t:
        run = playbook(results_dir, "-e", json.dumps({"regression_device_map": {"loop1": device}}), wrap=t.wrap)
    assert run.returncode != 0, run.stdout[-6000:]
    assert "Regression against baseline randmix" in run.stdout
    verdict = json.loads(latest(results_dir, "verdict.json"))
    assert verdict["exit_code"] == 10
    by_metric = {m["metric"]: m for m in verdict["groups"][0]["metrics"]}
    assert by_metric["iops"]["verdict"] == "regression"
    assert by_metric["iops"]["candidate"]["mean"] < 0.5 * by_metric["iops"]["baseline"]["mean"]
    assert "REGRESSION" in latest(results_dir, "verdict.md")
    assert leftovers(results_dir) == []


def test_blkfleet_db_names_the_roles_store():
    """$BLKFLEET_DB on the controller is the role's store: here a PostgreSQL database; no SQLite file is made."""
    path = tempfile.mkdtemp(prefix="blkfleet-regression-pg-", dir="/dev/shm")
    try:
        os.mkdir(loop_dir(path))
        with postgres.cluster() as server:
            url = postgres.fresh_database(server)
            run = playbook(path, env={"BLKFLEET_DB": url})
            assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
            assert "Baseline randmix created" in latest(path, "verdict.md")
            with Store(url, create=False) as store:
                assert len(store.runs()) == 3 and len(store.baseline("randmix")) == 3
        assert not os.path.exists(os.path.join(path, "blkfleet.sqlite"))
        assert loops(path) == [] and leftovers(path) == []
    finally:
        shutil.rmtree(path, ignore_errors=True)

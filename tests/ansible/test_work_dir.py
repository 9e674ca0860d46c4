"""Controller directories another user could change are refused before anything is written through them: the
module ``blkfleet.core.work_dir``, ``verified_fetch``, and the shipped capture playbook run as root from a
world-writable directory where another user planted ``results`` as a link (the real ``ansible`` programs)."""

import os
import subprocess

from helpers import REPO
from helpers.adhoc import ansible_bin, ansible_env, run_adhoc

NOBODY = 65534


def planted(tmp_path):
    """A sticky world-writable project directory (like /tmp) where uid 65534 made ``results`` a link to a
    directory of root's; returns (project, victim)."""
    project, victim = tmp_path / "project", tmp_path / "victim"
    project.mkdir()
    victim.mkdir()
    os.chmod(project, 0o1777)
    (project / "results").symlink_to(victim)
    os.lchown(project / "results", NOBODY, NOBODY)
    return project, victim


def test_work_dir_makes_the_directory_once_and_only_outside_check_mode(tmp_path):
    path = tmp_path / "results" / "replays"
    rc, result, _ = run_adhoc("blkfleet.core.work_dir", f"path={path}", check=True)
    assert rc == 0 and result["changed"] is True and not os.path.exists(tmp_path / "results")
    rc, result, _ = run_adhoc("blkfleet.core.work_dir", f"path={path}")
    assert rc == 0 and result["changed"] is True and os.path.isdir(path)
    assert result["real_path"] == str(path)
    rc, result, _ = run_adhoc("blkfleet.core.work_dir", f"path={path}")
    assert rc == 0 and result["changed"] is False


def test_work_dir_and_verified_fetch_refuse_a_planted_link(tmp_path):
    project, victim = planted(tmp_path)
    for check in (True, False):
        rc, result, _ = run_adhoc("blkfleet.core.work_dir", f"path={project}/results/traces", check=check)
        assert rc != 0 and "real_path" not in result
        assert f"the link {project}/results is owned by uid {NOBODY}" in result["msg"]
    rc, result, _ = run_adhoc("blkfleet.core.verified_fetch", f"src=/etc/hostname dest={project}/results/hostname")
    assert rc != 0 and "refusing this output directory" in result["msg"]
    assert os.listdir(victim) == []


def test_capture_playbook_refuses_a_planted_results_link_before_capturing(tmp_path):
    project, victim = planted(tmp_path)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("sources:\n  hosts:\n    ghost:\n      ansible_host: 192.0.2.1\n")
    run = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(inventory), "blkfleet.core.capture",
         "-e", '{"capture_devices": ["loop0"], "capture_seconds": 1}'],
        cwd=project, capture_output=True, text=True, timeout=300,
        env=ansible_env(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "collections"), PWD=str(project)))
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert f"the link {project}/results is owned by uid {NOBODY}" in out, out
    assert "UNREACHABLE" not in out, out  # refused before the source host was contacted
    assert os.listdir(victim) == []


def test_shipped_playbook_without_a_project_directory_says_so(tmp_path):
    """Run from cron (no PWD), a shipped playbook stops with one clear error instead of writing under /results."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("sources:\n  hosts:\n    ghost:\n      ansible_host: 192.0.2.1\n")
    env = ansible_env(ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "collections"))
    env.pop("PWD", None)
    run = subprocess.run([ansible_bin("ansible-playbook"), "-i", str(inventory), "blkfleet.core.record"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "no project directory: PWD is unset" in out, out
    assert not os.path.exists("/results")

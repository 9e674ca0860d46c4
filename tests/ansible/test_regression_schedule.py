"""``playbooks/regression_schedule.yml`` (role blkfleet.core.regression_schedule), real ansible-playbook, into temporary
directories: systemd detection, the cron path for real (check mode, install, idempotence, the cron.d file checked
without crontab, its command run the way cron runs it: a real regression run, logged), the systemd units checked by
``systemd-analyze verify``, removal."""

import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env

pytestmark = [pytest.mark.root]

ROLE = os.path.join(REPO, "collections", "ansible_collections", "blkfleet", "core", "roles", "regression_schedule")
SYSTEMD_BOOTED = os.path.isdir("/run/systemd/system")


def load_checker():
    spec = importlib.util.spec_from_file_location("check_cron_d", os.path.join(ROLE, "files", "check_cron_d.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dirs():
    root = tempfile.mkdtemp(prefix="blkfleet-schedule-test-")
    d = {name: os.path.join(root, name) for name in ("bin", "lib", "cron.d", "systemd", "results")}
    d["root"] = root
    d["log"] = os.path.join(d["results"], "regression", "schedule.log")
    yield d
    shutil.rmtree(root, ignore_errors=True)


def schedule(dirs, *extra, check=False):
    program = ansible_bin("ansible-playbook")
    assert program, "ansible-playbook is not installed"
    argv = [program, "playbooks/regression_schedule.yml",
            "-e", f"regression_schedule_bin_dir={dirs['bin']}", "-e", f"regression_schedule_lib_dir={dirs['lib']}",
            "-e", f"regression_schedule_cron_dir={dirs['cron.d']}",
            "-e", f"regression_schedule_systemd_dir={dirs['systemd']}",
            "-e", f"regression_schedule_log={dirs['log']}",
            "-e", json.dumps({"regression_schedule_args": [
                "-e", f"regression_results_dir={dirs['results']}", "-e", "regression_iterations=3",
                "-e", "regression_baseline_runs=1"]}), *extra]
    if check:
        argv += ["--check", "--diff"]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=ansible_env())
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", run.stdout).group(1)), run.stdout


def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_cron_path_for_real(dirs):
    backend = [] if not SYSTEMD_BOOTED else ["-e", "regression_schedule_backend=cron"]
    changed, out = schedule(dirs, *backend, check=True)
    assert changed > 0 and files(dirs["root"]) == []  # check mode: reported, nothing written
    if not SYSTEMD_BOOTED:
        assert "present: cron (systemd is not the running init system)" in out

    changed, out = schedule(dirs, *backend)
    assert changed > 0
    cron_file = os.path.join(dirs["cron.d"], "blkfleet-regression")
    wrapper = os.path.join(dirs["bin"], "blkfleet-regression")
    assert files(dirs["root"]) == ["bin/blkfleet-regression", "cron.d/blkfleet-regression", "lib/check_checkout.py",
                                   "lib/check_cron_d.py"]
    assert not os.path.exists(dirs["systemd"])
    with open(cron_file) as f:
        text = f.read()
    jobs = [line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert jobs == [f"30 2 * * * root {wrapper}"]  # OnCalendar *-*-* 02:30:00
    assert oct(os.stat(cron_file).st_mode & 0o777) == "0o644" and os.access(wrapper, os.X_OK)
    assert load_checker().check(text) == []
    check = subprocess.run(["python3", os.path.join(dirs["lib"], "check_cron_d.py"), cron_file])
    assert check.returncode == 0

    assert schedule(dirs, *backend)[0] == 0  # idempotent
    assert schedule(dirs, *backend, check=True)[0] == 0

    # Run the job the way cron does: /bin/sh -c COMMAND, cron's environment (the file's SHELL and PATH)
    env = {"SHELL": "/bin/sh", "HOME": "/root", "LOGNAME": "root", "USER": "root"}
    env.update(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]+=", line))
    command = jobs[0].split(None, 6)[6]
    run = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    with open(dirs["log"]) as f:
        log = f.read()
    assert re.search(r"=== \S+Z blkfleet-regression start: .*/playbooks/regression.yml", log)
    assert "=== " in log and log.rstrip().endswith("blkfleet-regression end: exit 0")
    assert "PLAY RECAP" in log and run.stdout == log  # standard output (cron's mail) is the log
    with open(os.path.join(dirs["results"], "regression", "randmix", "latest", "verdict.md")) as f:
        assert "Baseline randmix created" in f.read()

    # a second run while one is going does not start
    with open(dirs["log"] + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 75 and "a run is still going" in busy.stdout

    changed, _ = schedule(dirs, *backend, "-e", "regression_schedule_state=absent")
    assert changed > 0 and files(os.path.join(dirs["root"], "bin")) == [] and not os.listdir(dirs["cron.d"])
    assert files(os.path.join(dirs["root"], "lib")) == []


def test_systemd_units_verify(dirs):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    extra = ["-e", "regression_schedule_backend=systemd",
             "-e", "regression_schedule_on_calendar='Mon..Fri *-*-* 01:15:00'"]
    changed, out = schedule(dirs, *extra, check=True)
    assert changed > 0 and files(dirs["root"]) == []
    changed, out = schedule(dirs, *extra)
    assert changed > 0
    if not SYSTEMD_BOOTED:
        assert "installed but not enabled" in out
    service = os.path.join(dirs["systemd"], "blkfleet-regression.service")
    timer = os.path.join(dirs["systemd"], "blkfleet-regression.timer")
    verify = subprocess.run([analyze, "verify", "--man=no", service, timer], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    with open(timer) as f:
        assert "OnCalendar=Mon..Fri *-*-* 01:15:00\n" in f.read()
    with open(service) as f:
        unit = f.read()
    assert f"ExecStart={dirs['bin']}/blkfleet-regression\n" in unit and "Type=oneshot\n" in unit
    assert schedule(dirs, *extra)[0] == 0
    # a bad calendar is refused before anything is written
    program = ansible_bin("ansible-playbook")
    bad = subprocess.run([program, "playbooks/regression_schedule.yml", "-e", "regression_schedule_backend=systemd",
                          "-e", "regression_schedule_on_calendar=bogus",
                          "-e", f"regression_schedule_bin_dir={dirs['bin']}",
                          "-e", f"regression_schedule_systemd_dir={dirs['systemd']}"],
                         cwd=REPO, capture_output=True, text=True, env=ansible_env())
    assert bad.returncode != 0 and "bogus" in bad.stdout


def test_cron_time_needs_a_simple_calendar(dirs):
    program = ansible_bin("ansible-playbook")
    run = subprocess.run([program, "playbooks/regression_schedule.yml", "-e", "regression_schedule_backend=cron",
                          "-e", "regression_schedule_on_calendar='Mon..Fri *-*-* 01:15:00'",
                          "-e", f"regression_schedule_bin_dir={dirs['bin']}",
                          "-e", f"regression_schedule_lib_dir={dirs['lib']}",
                          "-e", f"regression_schedule_cron_dir={dirs['cron.d']}", "--check"],
                         cwd=REPO, capture_output=True, text=True, env=ansible_env())
    assert run.returncode != 0 and "set regression_schedule_cron" in run.stdout


@pytest.mark.parametrize("line, problem", [
    ("30 2 * * * root /bin/true", None),
    ("*/15 1-5,7 1 jan-mar mon-fri root /bin/true", None),
    ("@daily root /bin/true", None),
    ("60 2 * * * root /bin/true", "minute: '60' out of range"),
    ("30 2 * * * /bin/true", "expected 5 time fields, a user and a command"),
    ("30 2 * * root /bin/true", "expected 5 time fields"),
    ("30 2 * * * nosuchuser-blkfleet /bin/true", "no such user"),
    ("30 2 * * * root /nonexistent/blkfleet", "not an executable file"),
    ("5-1 2 * * * root /bin/true", "reversed"),
    ("@often root /bin/true", "unknown @often"),
])
def test_checker(line, problem):
    problems = load_checker().check(f"SHELL=/bin/sh\n{line}\n")
    if problem is None:
        assert problems == []
    else:
        assert problems and problem in problems[0], problems


def test_checker_needs_the_last_newline():
    assert "no newline" in load_checker().check("30 2 * * * root /bin/true")[0]


# A checkout of a user's own: a playbook that leaves a marker file (holding $BLKFLEET_DB). The wrapper is run the
# way cron runs it.
MARKER_PLAYBOOK = """---
- name: Leave a marker
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Leave the marker, holding the results store the run was given
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.env', 'BLKFLEET_DB') }}"
        dest: "{{ marker }}"
        mode: "0600"
"""


def make_project(parent, name):
    project = os.path.join(parent, name)
    os.makedirs(os.path.join(project, "playbooks"))
    with open(os.path.join(project, "playbooks", "marker.yml"), "w") as f:
        f.write(MARKER_PLAYBOOK)
    return project


def install_for(dirs, project, marker, *extra):
    """Install the cron schedule of ``project``'s marker playbook; returns the completed ansible-playbook."""
    args = {"regression_schedule_backend": "cron", "regression_schedule_bin_dir": dirs["bin"],
            "regression_schedule_lib_dir": dirs["lib"], "regression_schedule_cron_dir": dirs["cron.d"],
            "regression_schedule_systemd_dir": dirs["systemd"], "regression_schedule_project_dir": project,
            "regression_schedule_playbook": os.path.join(project, "playbooks", "marker.yml"),
            "regression_schedule_log": os.path.join(project, "results", "schedule.log"),
            "regression_schedule_args": ["-e", json.dumps({"marker": marker})]}
    return subprocess.run([ansible_bin("ansible-playbook"), "playbooks/regression_schedule.yml", "-e", json.dumps(args),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=300, env=ansible_env())


def run_like_cron(dirs, cwd):
    with open(os.path.join(dirs["cron.d"], "blkfleet-regression")) as f:
        text = f.read()
    env = {"SHELL": "/bin/sh", "HOME": "/root", "LOGNAME": "root", "USER": "root"}
    env.update(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z]+=", line))
    command = [line for line in text.splitlines() if line and not line.startswith("#")][-1].split(None, 6)[6]
    return subprocess.run(["/bin/sh", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def found(root, name):
    return [os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs if n == name]


def test_wrapper_quotes_every_value(dirs):
    os.chmod(dirs["root"], 0o755)
    project = make_project(dirs["root"], "proj $(touch PWNED)")
    marker = os.path.join(dirs["root"], "ran `touch PWNED` $(touch PWNED)")
    cwd = os.path.join(dirs["root"], "cwd")
    os.mkdir(cwd)
    install = install_for(dirs, project, marker)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-2000:]
    wrapper = os.path.join(dirs["bin"], "blkfleet-regression")
    assert subprocess.run(["bash", "-n", wrapper]).returncode == 0
    run = run_like_cron(dirs, cwd)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert os.path.exists(marker)  # the playbook ran, with its argument intact
    with open(os.path.join(project, "results", "schedule.log")) as f:
        log = f.read()
    assert f"blkfleet-regression start: {project}/playbooks/marker.yml\n" in log and "end: exit 0" in log
    assert found(dirs["root"], "PWNED") == [] and os.listdir(cwd) == []  # nothing in the paths was run


def test_checkout_others_can_change_is_refused(dirs):
    """The wrapper runs as root: a checkout file, the checkout or a directory above it that another user owns or can
    write is refused at install time and before every run, and nothing of it is run."""
    nobody = "nobody"
    uid = __import__("pwd").getpwnam(nobody).pw_uid
    os.chmod(dirs["root"], 0o755)
    parent = os.path.join(dirs["root"], "home")
    os.mkdir(parent)
    project = make_project(parent, "proj")
    playbook = os.path.join(project, "playbooks", "marker.yml")
    marker = os.path.join(dirs["root"], "marker")
    pwned = os.path.join(dirs["root"], "pwned-as-root")
    cwd = os.path.join(dirs["root"], "cwd")
    os.mkdir(cwd)

    # a root-owned checkout: installed, and the wrapper runs it
    install = install_for(dirs, project, marker)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-2000:]
    run = run_like_cron(dirs, cwd)
    assert run.returncode == 0 and os.path.exists(marker), run.stdout[-3000:] + run.stderr[-2000:]
    os.unlink(marker)

    # the user owns the playbook and adds a task of their own: the wrapper refuses, nothing runs as root
    log = os.path.join(project, "results", "schedule.log")
    with open(log) as f:
        logged = f.read()
    os.chown(playbook, uid, -1)
    evil = f"""
    - name: Take root
      ansible.builtin.shell: id -u > {pwned}
      changed_when: true
"""
    edit = subprocess.run(["runuser", "-u", nobody, "--", "sh", "-c", 'cat >> "$0"', playbook], input=evil, text=True)
    assert edit.returncode == 0
    run = run_like_cron(dirs, cwd)
    assert run.returncode == 77, run.stdout[-3000:] + run.stderr[-2000:]
    assert f"refusing to run: {playbook}: owned by uid {uid}, not by root" in run.stderr
    assert not os.path.exists(marker) and not os.path.exists(pwned)
    with open(log) as f:
        assert f.read() == logged  # refused before the log is touched
    # ... and the role refuses to install it
    install = install_for(dirs, project, marker)
    assert install.returncode != 0 and f"{playbook}: owned by uid {uid}" in install.stdout

    # a root-owned checkout that others can write to, or below a directory another user owns: refused too
    os.chown(playbook, 0, -1)
    os.chmod(project, 0o777)
    run = run_like_cron(dirs, cwd)
    assert run.returncode == 77 and f"{project}: others can write to it (mode 0777)" in run.stderr
    os.chmod(project, 0o755)
    os.chown(parent, uid, -1)
    run = run_like_cron(dirs, cwd)
    assert run.returncode == 77 and f"{parent}: owned by uid {uid}, not by root (it is above" in run.stderr
    assert not os.path.exists(marker) and not os.path.exists(pwned)
    # a fresh install of that checkout writes nothing
    shutil.rmtree(dirs["bin"])
    install = install_for(dirs, project, marker)
    assert install.returncode != 0 and not os.path.exists(dirs["bin"])


def test_the_runs_get_the_results_store(dirs):
    """regression_schedule_db reaches the scheduled run as BLKFLEET_DB; a URL with a password is refused."""
    os.chmod(dirs["root"], 0o755)
    project = make_project(dirs["root"], "proj")
    marker = os.path.join(dirs["root"], "marker")
    url = "postgresql://blkfleet@/results?host=/run/postgresql"
    install = install_for(dirs, project, marker, "-e", json.dumps({"regression_schedule_db": url}))
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-2000:]
    run = run_like_cron(dirs, dirs["root"])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    with open(marker) as f:
        assert f.read() == url
    refused = install_for(dirs, project, marker, "-e",
                          json.dumps({"regression_schedule_db": "postgresql://blkfleet:s3cret@db/results"}))
    assert refused.returncode != 0 and "holds a password" in refused.stdout
    with open(os.path.join(dirs["bin"], "blkfleet-regression")) as f:
        assert "s3cret" not in f.read()

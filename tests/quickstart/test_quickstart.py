"""docs/quickstart.md, run as written: its ``sh`` blocks, in order, in one bash outside the checkout, with only the
settings of its first block replaced: a fresh venv, two network-namespace hosts with their own sshd
(tests/netns/netns_hosts.py) and a loop device each, a throwaway PostgreSQL server (tests/helpers/postgres.py).
The wheel and the collection are built from this checkout first; the report is then opened in headless Chromium."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import ENV, REPO
from helpers.browser import CHROMIUM_FLAGS, chromium
from helpers.capture_cli import restore_tracer, stop_left
from helpers.distributions import build
from helpers.postgres import cluster, fresh_database

pytestmark = [pytest.mark.root, pytest.mark.slow]

DOC = REPO / "docs" / "quickstart.md"
SETTINGS = ("VENV", "SOURCE", "SOURCE_DEV", "TARGET", "TARGET_DEV", "BLKFLEET_DB")
HELPER = REPO / "tests" / "netns" / "netns_hosts.py"
SET, SUBNET = "qs", "10.231.9.0/24"
HOST_CAPTURE = "/var/lib/blkfleet/capture"  # the capture role's default output directory on the source
HOST_RESULTS = "/var/lib/blkfleet/results/target1-replay.json"  # the replay role's default results path
JOBS = "/run/blkfleet/replay"
NETWORK = re.compile(r"PIP_\w+|(?i:https?_proxy|no_proxy|all_proxy)|SSL_CERT_\w+|REQUESTS_CA_BUNDLE")
PLOTS = ("iops_over_time", "mb_s_over_time", "latency_over_time", "in_flight_over_time", "latency_cdf",
         "lba_heatmap")


def doc_blocks():
    """The ``sh`` blocks of the page, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)


def script(settings):
    """The page's commands with its first block (the settings, ``export NAME=VALUE  # what``) replaced."""
    first, *rest = doc_blocks()
    names = tuple(re.fullmatch(r"export (\w+)=\S+ +# .+", line).group(1) for line in first.splitlines())
    assert names == SETTINGS, names
    exports = "".join(f"export {name}={settings[name]}\n" for name in SETTINGS)
    return "set -e -o pipefail -x\n" + exports + "".join(rest)


def netns_hosts(*args):
    run = subprocess.run([sys.executable, str(HELPER), *args, "--set", SET], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def walk_through(commands, cwd, env, timeout=900):
    """Run the commands in bash, in a session of their own: on a timeout or an interrupt, ansible-playbook and
    everything else they started is killed with them. Returns (exit code, the output)."""
    proc = subprocess.Popen(["bash", "-c", commands], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, f"{out}\n(killed after {timeout} s)"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out


@pytest.fixture
def machine(loopdev):
    """Two namespace hosts, a loop device for each, a PostgreSQL database and a working directory outside the
    checkout; all removed after, with what the walk-through left on this machine (the hosts share its files)."""
    for tool in ("/usr/sbin/sshd", "/usr/bin/fio"):
        if not os.path.exists(tool):
            pytest.skip(f"needs {tool} (Debian: openssh-server, fio)")
    browser = chromium()
    restore_tracer()
    existed = {path: os.path.exists(path) for path in (HOST_CAPTURE, HOST_RESULTS)}
    jobs = set(os.listdir(JOBS)) if os.path.isdir(JOBS) else set()
    work = tempfile.mkdtemp(prefix="blkfleet-quickstart-")
    try:
        with cluster() as server:
            info = json.loads(netns_hosts("up", "--count", "2", "--subnet", SUBNET))
            yield {"work": work, "info": info, "db": fresh_database(server), "browser": browser,
                   "source_dev": loopdev(64 << 20), "target_dev": loopdev(64 << 20)}
    finally:
        try:
            netns_hosts("down")
        finally:
            stop_left(HOST_CAPTURE)
            restore_tracer()
            for path in (p for p, was in existed.items() if not was):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.unlink(path)
            for name in (set(os.listdir(JOBS)) if os.path.isdir(JOBS) else set()) - jobs:
                if name.endswith("-target1"):
                    shutil.rmtree(os.path.join(JOBS, name), ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


def test_quickstart_runs_as_written(machine):
    work, info = machine["work"], machine["info"]
    home, project = os.path.join(work, "home"), os.path.join(work, "project")
    os.mkdir(home)
    os.mkdir(project)
    started = time.monotonic()
    dist = build(project, sdist=False)
    built = time.monotonic()
    venv = os.path.join(work, "venv")
    source, target = (host["address"] for host in info["hosts"])
    settings = {"VENV": venv, "SOURCE": source, "SOURCE_DEV": os.path.basename(machine["source_dev"]),
                "TARGET": target, "TARGET_DEV": machine["target_dev"], "BLKFLEET_DB": f"'{machine['db']}'"}
    # the user's environment: a home of its own, this machine's network settings for pip (proxy, index, cache), SSH
    # as root with the hosts' key (what the user's ~/.ssh/config would say)
    env = {name: value for name, value in os.environ.items() if NETWORK.match(name)}
    env.update({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8",
                "PIP_CACHE_DIR": os.path.expanduser("~/.cache/pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "ANSIBLE_REMOTE_USER": "root", "ANSIBLE_PRIVATE_KEY_FILE": info["client_key"],
                "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_CONTROL_PATH_DIR": info["control_path_dir"],
                "ANSIBLE_NOCOLOR": "1"})
    rc, out = walk_through(script(settings), project, env)
    ended = time.monotonic()
    print(f"\nbuild {built - started:.1f} s, walk-through {ended - built:.1f} s")
    assert rc == 0, out[-12000:]
    assert {os.path.basename(p) for p in dist.values()} <= set(os.listdir(project))

    # blkfleet and the collection came from the files, not from this checkout
    where = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import blkfleet; print(blkfleet.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout
    assert where.startswith(venv + "/"), where
    assert os.path.isfile(os.path.join(home, ".ansible", "collections", "ansible_collections", "blkfleet", "core",
                                       "MANIFEST.json"))

    # the source's workload captured, every IO of it replayed on the target, nothing failed
    results = os.path.join(project, "results")
    with open(os.path.join(results, "traces", "source1", "capture.json")) as f:
        queued = json.load(f)["summary"]["queued"]
    with open(os.path.join(results, "replays", "target1.json")) as f:
        doc = json.load(f)
    assert 2000 <= queued <= 4000, queued
    assert doc["total"]["ios"] == queued and doc["total"]["errors"]["count"] == 0 and not doc["interrupted"]
    assert list(doc["devices"]) == [settings["SOURCE_DEV"]]
    assert doc["devices"][settings["SOURCE_DEV"]]["target"] == machine["target_dev"]
    # the collection's own playbook ran (its fleet report), with the project directory the one it ran in
    with open(os.path.join(results, "replays", "report.json")) as f:
        fleet = json.load(f)
    assert fleet["targets"]["target1"]["outcome"] == "ok" and fleet["failed_targets"] == {}, fleet

    # the run is in PostgreSQL
    listing = subprocess.run([sys.executable, "-m", "blkfleet", "results", "list", "--db", machine["db"],
                              "--json"], capture_output=True, text=True, env=ENV, timeout=60)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [r["device"] for r in rows] == [settings["SOURCE_DEV"]], rows

    # the report, opened in headless Chromium: its script ran and every plot of this run has data
    report = os.path.join(project, "report.html")
    dom = subprocess.run([machine["browser"], *CHROMIUM_FLAGS, f"--user-data-dir={work}/chromium",
                          "--dump-dom", "file://" + report], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-interactive="ready"' in dom.stdout
    for plot in PLOTS:
        svg = re.search(rf'<svg[^>]*id="plot-{plot}".*?</svg>', dom.stdout, re.S)
        assert svg and 'data-empty="true"' not in svg.group(0), plot

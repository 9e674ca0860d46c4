"""Pull mode for real: namespace hosts with their own sshd (tests/netns/netns_hosts.py, set "bpl", 10.231.12.0/24)
download a bundle from Debian's nginx on the controller's side of their bridge (its own address, 10.231.12.2) over
their veth links. The replay role publishes once and both targets pull and replay; a second run downloads nothing
(changed=0, check mode too); a damaged bundle on the server is refused with one line and nothing kept; a server
killed halfway through a download is retried as configured (and, while it stays down, fails with the cut and the
attempts named), never leaving or using a partial bundle; a 404 fails at once."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env, netns_inventory_head
from netns.web_server import Nginx, available

pytestmark = [pytest.mark.root, pytest.mark.slow]

HELPER = os.path.join(REPO, "tests", "netns", "netns_hosts.py")
SET, SUBNET, SERVER = "bpl", "10.231.12.0/24", "10.231.12.2"
PORT = 8081
RANDMIX = os.path.join(REPO, "tests", "data", "randmix")
RUN_ROOT = "/run/blkfleet/replay"


def helper(*args):
    return subprocess.run([sys.executable, HELPER, *args, "--set", SET], capture_output=True, text=True, timeout=120)


def blkfleet(*args):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "engine")))
    assert run.returncode == 0, run.stderr
    return run


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def fleet():
    """Two namespace hosts t1, t2, each with its own bundle directory and a loop device; nginx on SERVER serving
    ``www``; the randmix bundle (737 KiB) and its id."""
    if not os.path.exists("/usr/sbin/sshd") or os.geteuid() != 0 or not available():
        pytest.skip("needs root, openssh-server and nginx (tests/run installs them)")
    work = tempfile.mkdtemp(prefix="blkfleet-pull-", dir="/dev/shm")
    loops = []
    web = None
    try:
        up = helper("up", "--count", "2", "--subnet", SUBNET)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        subprocess.run(["ip", "addr", "add", f"{SERVER}/24", "dev", f"{SET}-br"], check=True)
        for name in ("t1", "t2"):
            backing = os.path.join(work, f"{name}.img")
            with open(backing, "wb") as f:
                f.truncate(64 << 20)
            loops.append(subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                                        check=True).stdout.strip())
        os.mkdir(os.path.join(work, "replay"))
        blkfleet("record", "-q", "-d", RANDMIX, "-D", os.path.join(work, "replay"), "-F")
        bundle = os.path.join(work, "randmix.bundle")
        bundle_id = blkfleet("bundle", "create", "-d", os.path.join(work, "replay"), "-o", bundle, "-F").stdout.strip()
        hosts = "".join(
            f"        {name}: {{ansible_host: {host['address']}, replay_device_map: {{loop1: {loop}}},"
            f" replay_results_path: {work}/{name}-replay.json, replay_bundle_dir: {work}/{name}/bundles}}\n"
            for name, host, loop in zip(("t1", "t2"), info["hosts"], loops))
        inventory = os.path.join(work, "hosts.yml")
        with open(inventory, "w") as f:
            f.write(netns_inventory_head(info) + "  children:\n    targets:\n      hosts:\n" + hosts)
        www = os.path.join(work, "www")
        os.mkdir(www)
        web = Nginx(www, SERVER, PORT, os.path.join(work, "nginx")).start()
        yield {"work": work, "info": info, "inventory": inventory, "bundle": bundle, "bundle_id": bundle_id,
               "web": web, "www": www, "hosts": dict(zip(("t1", "t2"), info["hosts"]))}
    finally:
        if web is not None:
            web.stop()
        down = helper("down")
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(work, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def dest(fleet, host):
    return os.path.join(fleet["work"], host, "bundles")


def left(fleet, host):
    """What a host's bundle directory holds (hidden work directories included)."""
    try:
        return sorted(os.listdir(dest(fleet, host)))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def clean(fleet):
    """Empty bundle directories on both hosts and an empty server before and after."""
    def wipe():
        for host in ("t1", "t2"):
            shutil.rmtree(dest(fleet, host), ignore_errors=True)
        for entry in os.listdir(fleet["www"]):
            shutil.rmtree(os.path.join(fleet["www"], entry), ignore_errors=True)
    wipe()
    try:
        yield
    finally:
        wipe()


def playbook(fleet, path, *args, **variables):
    argv = [ansible_bin("ansible-playbook"), "-i", fleet["inventory"], path, "-e", json.dumps(variables), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=ansible_env(), timeout=600)


def adhoc(fleet, host, args, background=False):
    """``ansible HOST -m blkfleet.core.replay_bundle -a ARGS`` (JSON arguments); the Popen or (rc, result)."""
    argv = [ansible_bin("ansible"), host, "-i", fleet["inventory"], "-m", "blkfleet.core.replay_bundle",
            "-a", json.dumps(dict(args, dest=dest(fleet, host)))]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    return proc if background else result_of(proc, host)


def result_of(proc, host, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    start = out.find(f"{host} | ")
    arrow = out.find(" => ", start)
    assert start >= 0 and arrow > 0, out
    return proc.returncode, json.JSONDecoder().raw_decode(out[arrow + 4:])[0]


def gets(fleet, name):
    return [r for r in fleet["web"].requests() if r["method"] == "GET" and r["uri"].endswith("/" + name)]


PUSH_PLAY = """- name: Distribute the bundle as the replay role does
  hosts: targets
  gather_facts: false
  tasks:
    - name: Push or pull
      ansible.builtin.include_role:
        name: blkfleet.core.replay
        tasks_from: push
"""


def test_publish_once_every_target_pulls_and_replays(fleet):
    name = fleet["bundle_id"] + ".tar"
    variables = {"replay_bundle_file": fleet["bundle"], "replay_publish_to": os.path.join(fleet["www"], "bundles"),
                 "replay_bundle_url": f"http://{SERVER}:{PORT}/bundles/"}
    play = os.path.join(fleet["work"], "push.yml")
    with open(play, "w") as f:
        f.write(PUSH_PLAY)
    with clean(fleet):
        check = playbook(fleet, play, "--check", **variables)
        assert check.returncode == 0 and "changed=1" in check.stdout, check.stdout[-3000:]
        assert left(fleet, "t1") == [] and not os.path.exists(os.path.join(fleet["www"], "bundles"))

        first = playbook(fleet, play, **variables)
        assert first.returncode == 0, first.stdout[-4000:]
        for host in ("t1", "t2"):
            assert f"{host}                         : ok=" in first.stdout and left(fleet, host) == [name]
            assert sha256(os.path.join(dest(fleet, host), name)) == sha256(fleet["bundle"])
        served = gets(fleet, name)
        size = os.path.getsize(fleet["bundle"])
        # each target fetched it once, itself, over its own link
        assert sorted(r["remote"] for r in served) == sorted(h["address"] for h in fleet["hosts"].values())
        assert all(r["status"] == 200 and r["body_bytes_sent"] == size for r in served)

        for args in ((), ("--check",)):  # again: nothing published, nothing downloaded
            again = playbook(fleet, play, *args, **variables)
            assert again.returncode == 0 and "changed=1" not in again.stdout and "changed=0" in again.stdout, \
                again.stdout[-3000:]
        assert len(gets(fleet, name)) == 2

        # the whole replay playbook in pull mode: both replay the pulled bundle, every IO
        fetch_dir = os.path.join(fleet["work"], "replays")
        token = f"bpl{os.getpid()}"
        try:
            run = playbook(fleet, "playbooks/replay.yml", **variables, replay_fetch_dir=fetch_dir,
                           replay_run_id=token)
            assert run.returncode == 0, run.stdout[-4000:]
            with open(os.path.join(fetch_dir, "report.json")) as f:
                report = json.load(f)
            assert report["failed_targets"] == {} and all(report["targets"][h]["ios"] == 2000 for h in ("t1", "t2"))
            assert len(gets(fleet, name)) == 2
        finally:
            for entry in os.listdir(RUN_ROOT) if os.path.isdir(RUN_ROOT) else ():
                if entry.startswith(token + "-"):
                    shutil.rmtree(os.path.join(RUN_ROOT, entry), ignore_errors=True)


def damage(path):
    with tarfile.open(path) as tar:
        offset = next(m.offset_data for m in tar if m.name.startswith("replay/"))
    with open(path, "r+b") as f:
        f.seek(offset + 100)
        f.write(b"\xff" * 16)


def test_a_damaged_bundle_on_the_server_is_refused(fleet):
    name = fleet["bundle_id"] + ".tar"
    url = f"http://{SERVER}:{PORT}/{name}"
    with clean(fleet):
        shutil.copyfile(fleet["bundle"], os.path.join(fleet["www"], name))
        damage(os.path.join(fleet["www"], name))
        rc, res = adhoc(fleet, "t1", {"url": url})
        assert rc != 0 and res["msg"] == (
            f"{url}: refused, nothing kept: the download: member 'replay/loop1.replay.0': sha256 mismatch (content "
            "differs from the manifest)"), res
        assert left(fleet, "t1") == []
        # with the file's checksum (the controller's copy), refused before it is read as a bundle at all
        rc, res = adhoc(fleet, "t1", {"url": url, "checksum": sha256(fleet["bundle"])})
        assert rc != 0 and res["msg"] == (f"{url}: the download has sha256 {sha256(os.path.join(fleet['www'], name))}"
                                          f", not {sha256(fleet['bundle'])} (the published file differs): refused")
        assert left(fleet, "t1") == []


def test_not_found(fleet):
    url = f"http://{SERVER}:{PORT}/{'0' * 64}.tar"
    with clean(fleet):
        started = time.monotonic()
        rc, res = adhoc(fleet, "t2", {"url": url, "retries": 3, "retry_delay": 5})
        assert rc != 0 and res["msg"] == f"{url}: HTTP 404 Not Found" and res["attempts"] == 1
        assert time.monotonic() - started < 5 + 30 and left(fleet, "t2") == []


def wait_partial(fleet, host, size, timeout=60):
    """Until the host's download holds some but not all bytes; returns how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in left(fleet, host):
            path = os.path.join(dest(fleet, host), entry, "bundle.tar")
            if entry.startswith(".pull-") and os.path.exists(path) and 0 < os.path.getsize(path) < size // 2:
                return os.path.getsize(path)
        time.sleep(0.02)
    raise AssertionError(f"no partial download on {host}: {left(fleet, host)}")


def test_a_server_that_stops_halfway(fleet):
    name = fleet["bundle_id"] + ".tar"
    url = f"http://{SERVER}:{PORT}/{name}"
    size = os.path.getsize(fleet["bundle"])
    web = fleet["web"]
    try:
        with clean(fleet):
            shutil.copyfile(fleet["bundle"], os.path.join(fleet["www"], name))
            web.stop()
            web.limit_rate = "100k"  # 737 KiB: about 7 s
            web.start()
            # killed and back before the retry: the second attempt starts over and completes
            proc = adhoc(fleet, "t1", {"url": url, "retries": 2, "retry_delay": 3}, background=True)
            cut_at = wait_partial(fleet, "t1", size)
            web.stop()
            web.limit_rate = None
            web.start()
            rc, res = result_of(proc, "t1")
            assert rc == 0 and res["fetched"] and res["attempts"] == 2, res
            assert left(fleet, "t1") == [name] and sha256(os.path.join(dest(fleet, "t1"), name)) == sha256(
                fleet["bundle"])
            print(f"\nkilled the server {cut_at} bytes into the download; attempt 2 completed")

            # killed for good: every attempt fails, the message names the cut and the attempts, nothing is kept
            web.stop()
            web.limit_rate = "100k"
            web.start()
            proc = adhoc(fleet, "t2", {"url": url, "retries": 2, "retry_delay": 1}, background=True)
            cut_at = wait_partial(fleet, "t2", size)
            web.stop()
            rc, res = result_of(proc, "t2")
            assert rc != 0 and res["attempts"] == 3, res
            assert res["msg"].startswith(f"{url}: download failed after 3 attempts: ")
            assert "Connection refused" in res["msg"] and "; attempt 1: cut off after " in res["msg"]
            assert f" of {size} bytes" in res["msg"] and "\n" not in res["msg"]
            assert left(fleet, "t2") == []
            print(f"killed for good {cut_at} bytes in: {res['msg']}")
    finally:
        web.stop()
        web.limit_rate = None
        web.start()

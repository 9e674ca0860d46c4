"""tests/netns/netns_hosts.py: namespace hosts reachable by ansible over ssh and paramiko, isolated, cleaned up."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers.adhoc import netns_inventory_head

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER = os.path.join(REPO, "tests", "netns", "netns_hosts.py")
SET, SUBNET = "pyt", "10.231.2.0/24"


def helper(*args):
    return subprocess.run([sys.executable, HELPER, *args, "--set", SET], capture_output=True, text=True, timeout=120)


def leftovers():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line for line in (netns + links).splitlines() if f"{SET}-" in line]


@pytest.fixture
def hosts(tmp_path):
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")) or os.geteuid() != 0:
        pytest.skip("needs root and openssh-server")
    up = helper("up", "--count", "2", "--subnet", SUBNET)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(
            netns_inventory_head(info) + "    ansible_host_key_checking: false\n"
            "  hosts:\n"
            f"    h1: {{ansible_host: {info['hosts'][0]['address']}}}\n"
            f"    h2: {{ansible_host: {info['hosts'][1]['address']}, ansible_connection: paramiko}}\n"
        )
        yield info, str(inventory)
    finally:
        down = helper("down")
        assert down.returncode == 0, down.stderr
        assert leftovers() == []


def test_up_is_idempotent_and_isolated(hosts):
    info, _ = hosts
    again = helper("up", "--count", "2", "--subnet", SUBNET)
    assert again.returncode == 0, again.stderr
    assert [h["sshd_pid"] for h in json.loads(again.stdout)["hosts"]] == [h["sshd_pid"] for h in info["hosts"]]
    for host in info["hosts"]:
        routes = subprocess.run(["ip", "-n", host["name"], "-j", "-4", "route", "show"], capture_output=True,
                                text=True, check=True)
        assert [r["dst"] for r in json.loads(routes.stdout)] == [SUBNET]  # no default route: nothing outside


def test_blkdev_info_over_ssh_and_paramiko(hosts, adhoc):
    _, inventory = hosts
    for host in ("h1", "h2"):
        rc, engine, run = adhoc("blkfleet.core.engine", host=host, inventory=inventory)
        assert rc == 0, run.stdout + run.stderr
        rc, result, run = adhoc("blkfleet.core.blkdev_info", f"content_probe=none engine={engine['path']}", host=host,
                                inventory=inventory)
        assert rc == 0, run.stdout + run.stderr
        assert result["changed"] is False
        assert result["cpus"]["online_count"] >= 1
        assert result["kernel"]["release"] == os.uname().release


def test_down_after_crash_removes_everything(hosts):
    info, _ = hosts
    shutil.rmtree(os.path.dirname(info["client_key"]))  # state lost, sshd and namespaces still there
    down = helper("down")
    assert down.returncode == 0, down.stderr
    assert leftovers() == []
    for host in info["hosts"]:
        assert not os.path.exists(f"/proc/{host['sshd_pid']}/cmdline") or b"sshd" not in open(
            f"/proc/{host['sshd_pid']}/cmdline", "rb").read()

#!/usr/bin/env python3
"""Test hosts made of network namespaces, each with its own sshd: shared by Molecule and pytest.

    netns_hosts.py up   --set NAME --count N [--subnet 10.231.0.0/24]   # idempotent; prints the hosts as JSON
    netns_hosts.py down --set NAME                                      # idempotent; safe after a crash
    netns_hosts.py status --set NAME

A set NAME (1-8 of [a-z0-9]) owns, on this machine:
  - a bridge NAME-br holding the subnet's first address (the controller side, e.g. 10.231.0.1/24);
  - per host i (1..N): a namespace NAME-hI and a veth pair NAME-hI (on the bridge) / eth0 (inside), with address
    .(10+i); no default route, so a namespace reaches only the bridge subnet: the controller and the other hosts;
  - an sshd per host, started with ``nsenter --net`` (so it keeps the machine's mounts: /sys/kernel/tracing and
    the like stay visible, as on a real host) listening on ADDRESS:22, with a generated host key, a shared
    generated client key (root login by key only) and its pidfile;
  - a state directory /run/blkfleet-netns/NAME/: client key ``id_ed25519``, ``hosts.json``, per-host sshd files,
    and ``cp/`` for the SSH control sockets of Ansible (``ansible_control_path_dir``), closed by ``down``.

``down`` kills every process inside the set's namespaces (sshd and its sessions, found by namespace, never by
name), closes the SSH control masters, deletes the namespaces, veths and bridge and removes the state directory.
It works from the names alone, so it also cleans up after a crash that lost the state directory.
Needs root, iproute2, util-linux (nsenter) and openssh-server (/usr/sbin/sshd, ssh-keygen).
"""

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

STATE_ROOT = "/run/blkfleet-netns"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")


class Error(Exception):
    pass


def run(argv, check=True, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise Error(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def log(message):
    print(f"netns_hosts: {message}", file=sys.stderr)


class HostSet:
    def __init__(self, name, subnet="10.231.0.0/24", state_root=STATE_ROOT):
        if not NAME_RE.match(name):
            raise Error(f"set name {name!r}: use 1-8 characters of [a-z0-9]")
        self.name = name
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.version != 4 or self.subnet.prefixlen > 26:
            raise Error(f"subnet {subnet}: an IPv4 network of at least /26 is needed")
        self.state = os.path.join(state_root, name)
        self.bridge = f"{name}-br"

    # names and paths ------------------------------------------------------------------------------------------
    def netns(self, i):
        return f"{self.name}-h{i}"

    def veth(self, i):
        return f"{self.name}-h{i}"

    def address(self, i):
        return str(self.subnet.network_address + 10 + i)

    def controller_address(self):
        return str(self.subnet.network_address + 1)

    def host_dir(self, i):
        return os.path.join(self.state, f"h{i}")

    @property
    def client_key(self):
        return os.path.join(self.state, "id_ed25519")

    @property
    def control_dir(self):
        return os.path.join(self.state, "cp")

    # discovery ------------------------------------------------------------------------------------------------
    def existing_netns(self):
        out = run(["ip", "netns", "list"], check=False).stdout
        pattern = re.compile(rf"^{re.escape(self.name)}-h(\d+)\b")
        found = []
        for line in out.splitlines():
            m = pattern.match(line.strip())
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def existing_links(self):
        out = run(["ip", "-o", "link", "show"], check=False).stdout
        pattern = re.compile(rf"^\d+: ({re.escape(self.name)}-(?:h\d+|br))[@:]")
        return sorted({m.group(1) for m in map(pattern.match, out.splitlines()) if m})

    def link_exists(self, name):
        return run(["ip", "link", "show", "dev", name], check=False).returncode == 0

    def check_subnet_free(self):
        """Refuse a subnet that overlaps a route not made by this set (it could lead off this machine)."""
        routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
        for route in routes:
            dst = route.get("dst")
            if not dst or dst == "default" or route.get("dev") == self.bridge:
                continue
            try:
                net = ipaddress.ip_network(dst, strict=False)
            except ValueError:
                continue
            if net.overlaps(self.subnet) and route.get("dev") != self.bridge:
                raise Error(f"subnet {self.subnet} overlaps route {dst} dev {route.get('dev')}; pick another")

    # up -------------------------------------------------------------------------------------------------------
    def up(self, count):
        if os.geteuid() != 0:
            raise Error("needs root")
        for tool in ("ip", "nsenter", "ssh-keygen", SSHD):
            if not shutil.which(tool):
                raise Error(f"{tool} not found (apt-get install iproute2 util-linux openssh-server)")
        if count < 1 or count > 40:
            raise Error("count must be 1..40")
        self.check_subnet_free()
        for i in self.existing_netns():
            if i > count:
                self.down_host(i)
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        if not os.path.exists(self.client_key):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"blkfleet-netns-{self.name}",
                 "-f", self.client_key])
        shutil.copyfile(self.client_key + ".pub", os.path.join(self.state, "authorized_keys"))

        if not self.link_exists(self.bridge):
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "replace", f"{self.controller_address()}/{self.subnet.prefixlen}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

        hosts = []
        for i in range(1, count + 1):
            hosts.append(self.up_host(i))
        for host in hosts:
            wait_port(host["address"], 22, timeout=15)
        with open(os.path.join(self.state, "hosts.json"), "w") as f:
            json.dump(self.describe(hosts), f, indent=2)
        return self.describe(hosts)

    def up_host(self, i):
        ns, veth, addr = self.netns(i), self.veth(i), self.address(i)
        if ns not in {self.netns(j) for j in self.existing_netns()}:
            run(["ip", "netns", "add", ns])
        if not self.link_exists(veth):
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        inside = ["ip", "-n", ns]
        run(inside + ["link", "set", "lo", "up"])
        run(inside + ["addr", "replace", f"{addr}/{self.subnet.prefixlen}", "dev", "eth0"])
        run(inside + ["link", "set", "eth0", "up"])
        # No default route: only the bridge subnet is reachable from the namespace.
        run(inside + ["route", "flush", "default"], check=False)

        hdir = self.host_dir(i)
        os.makedirs(hdir, mode=0o700, exist_ok=True)
        host_key = os.path.join(hdir, "ssh_host_ed25519_key")
        if not os.path.exists(host_key):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{ns}", "-f", host_key])
        config = os.path.join(hdir, "sshd_config")
        pidfile = os.path.join(hdir, "sshd.pid")
        with open(config, "w") as f:
            f.write(sshd_config(addr, host_key, pidfile, os.path.join(self.state, "authorized_keys")))
        if self.sshd_pid(i) is None:
            run(["nsenter", f"--net=/run/netns/{ns}", SSHD, "-f", config, "-E", os.path.join(hdir, "sshd.log")])
            deadline = time.monotonic() + 10
            while self.sshd_pid(i) is None:
                if time.monotonic() > deadline:
                    raise Error(f"sshd of {ns} did not start: see {hdir}/sshd.log")
                time.sleep(0.05)
        return {"name": ns, "index": i, "address": addr, "sshd_pid": self.sshd_pid(i)}

    def sshd_pid(self, i):
        """PID of host i's sshd if its pidfile names a live sshd started with this host's config."""
        pidfile = os.path.join(self.host_dir(i), "sshd.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()  # sshd rewrites it: "sshd: /usr/sbin/sshd -f CONFIG ... [listener] ..."
        except (OSError, ValueError):
            return None
        config = os.path.join(self.host_dir(i), "sshd_config").encode()
        return pid if config + b"\0" in cmdline + b"\0" or config + b" " in cmdline else None

    def describe(self, hosts):
        return {
            "set": self.name,
            "subnet": str(self.subnet),
            "controller_address": self.controller_address(),
            "client_key": self.client_key,
            "control_path_dir": self.control_dir,
            "hosts": hosts,
        }

    # down -----------------------------------------------------------------------------------------------------
    def close_control_masters(self):
        if not os.path.isdir(self.control_dir):
            return
        for entry in os.listdir(self.control_dir):
            sock = os.path.join(self.control_dir, entry)
            try:
                run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "blkfleet-netns"], check=False, timeout=10)
            except subprocess.TimeoutExpired:
                log(f"ssh -O exit timed out on {sock}")

    def down_host(self, i):
        ns = self.netns(i)
        pid = self.sshd_pid(i)
        if pid is not None:
            kill_and_wait([pid])
        if os.path.exists(f"/run/netns/{ns}"):
            pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split()]
            kill_and_wait(pids)
            run(["ip", "netns", "del", ns], check=False)
        if self.link_exists(self.veth(i)):
            run(["ip", "link", "del", self.veth(i)], check=False)
        shutil.rmtree(self.host_dir(i), ignore_errors=True)

    def down(self):
        if os.geteuid() != 0:
            raise Error("needs root")
        self.close_control_masters()
        indexes = set(self.existing_netns())
        if os.path.isdir(self.state):
            indexes |= {int(e[1:]) for e in os.listdir(self.state) if re.match(r"^h\d+$", e)}
        for link in self.existing_links():
            m = re.match(rf"^{re.escape(self.name)}-h(\d+)$", link)
            if m:
                indexes.add(int(m.group(1)))
        for i in sorted(indexes):
            self.down_host(i)
        if self.link_exists(self.bridge):
            run(["ip", "link", "del", self.bridge], check=False)
        shutil.rmtree(self.state, ignore_errors=True)
        left = self.existing_netns() or self.existing_links()
        if left:
            raise Error(f"could not remove {left}")

    def status(self):
        hosts = []
        for i in self.existing_netns():
            hosts.append({"name": self.netns(i), "index": i, "address": self.address(i), "sshd_pid": self.sshd_pid(i)})
        return dict(self.describe(hosts), bridge=self.link_exists(self.bridge))


def sshd_config(address, host_key, pidfile, authorized_keys):
    return f"""# Generated by tests/netns/netns_hosts.py: a throwaway test host, root login by key only.
Port 22
ListenAddress {address}
HostKey {host_key}
PidFile {pidfile}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
MaxSessions 50
MaxStartups 50:30:100
LogLevel ERROR
Subsystem sftp {SFTP_SERVER}
"""


def kill_and_wait(pids, timeout=5.0):
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.05)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_port(address, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise Error(f"{address}:{port} not reachable after {timeout} s: {e}") from None
            time.sleep(0.1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--set", dest="name", default="bf", help="name of the host set (default bf)")
    parser.add_argument("--count", type=int, default=1, help="hosts to bring up (default 1)")
    parser.add_argument("--subnet", default="10.231.0.0/24", help="IPv4 subnet of the set (default 10.231.0.0/24)")
    parser.add_argument("--state-root", default=STATE_ROOT, help=f"state directory root (default {STATE_ROOT})")
    args = parser.parse_args(argv)
    try:
        subnet = args.subnet
        saved = os.path.join(args.state_root, args.name, "hosts.json")
        if args.command == "status" and os.path.exists(saved):
            with open(saved) as f:
                subnet = json.load(f)["subnet"]
        hosts = HostSet(args.name, subnet, args.state_root)
        if args.command == "up":
            print(json.dumps(hosts.up(args.count), indent=2))
        elif args.command == "down":
            hosts.down()
        else:
            print(json.dumps(hosts.status(), indent=2))
    except Error as e:
        log(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Scale over namespace hosts, 1/4/8 targets: the whole capture_replay.yml (wall time, replay start skew), and, with
--distribution, how a large bundle reaches the targets: pushed by the controller or pulled from a web server.

As root, from the repository's venv. For each target count N, side by side in one run: N + 1 network-namespace
hosts with their own sshd (tests/netns/netns_hosts.py, set "fb", 10.231.7.0/24), one tmpfs-backed loop device
per host, one source capturing a fio workload (rate-limited 4 KiB random read/write) and N targets replaying
it (read-only, the playbook's default) with the two-phase start: every target arms (bundle read, targets checked,
workers ready), then the controller starts them all at one instant replay_start_margin (0.5 s) after the last one
armed; nothing is tuned. The whole ``ansible-playbook playbooks/capture_replay.yml`` is timed. From the fetched
results of every target, and its job's run.json (the namespace hosts share this machine's /run):

  start skew     = max - min over the targets of start.wall (the start instant the workers used)
  first-IO skew  = max - min of start.first_submit_wall (first IO submitted, epoch seconds)
  late max       = max of start.wall - start.requested (a target the start reached too late starts at once, late)
  armed -> start = start.requested - the last target's armed_at (how long the controller took to see every target
                   armed, plus the margin)
  launch spread  = max - min of the engines' start times (run.json "started"): what the old fixed delay had to cover

Everything (namespaces, sshd, loop devices, the work directory on /dev/shm, the jobs' run directories) is removed
after each count, also on failure or Ctrl-C.

    sudo .venv/bin/python bench/fleet_bench.py [--targets 1,4,8] [--seconds 3] [--rate 500] [--json FILE]

--distribution: one bundle of --bundle-mb (256) MB: the randmix sample trace (device loop1, 2,000 IOs, the one
replayed) and a second device, big0, holding 256 MB of btrecord-format replay files that are never replayed (so the
replays stay short): random 4 KiB reads, about as compressible as a random-IO trace (Ansible's SSH runs with -C).
For each mode and target count, the distribution step of the replay role runs alone (tasks_from: push), then
playbooks/replay.yml replays loop1 on every target with the two-phase start:

  push  the controller sends the bundle over each target's SSH connection (replay_bundle src);
  pull  the controller publishes it once by HTTP PUT to Debian's nginx, on its own address on the bridge
        (replay_publish_to: http://10.231.7.2:8089/bundles/), and every target downloads it over its link.

Bytes are counted by nftables counters on the controller's output hook, by source address: the controller's own
(10.231.7.1: SSH to the targets, the PUT) and the server's (10.231.7.2: what nginx sent); nginx's access log gives
each target's GET. Wall time of the distribution playbook, CPU seconds of the controller (ansible-playbook and its
children, RUSAGE_CHILDREN, plus the SSH control masters, which carry the bytes), and from the replay: start skew and
first-IO skew as above, each engine's arming time (run.json: armed_at - started), the replay playbook's wall time and
controller CPU. Each target has its own
bundle directory, remote temporary directory and results on tmpfs (the namespace hosts share this machine's files).

    sudo .venv/bin/python bench/fleet_bench.py --distribution [--targets 1,4,8] [--modes push,pull] [--bundle-mb 256]
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS_HOSTS = os.path.join(ROOT, "tests", "netns", "netns_hosts.py")
PLAYBOOK = os.path.join(ROOT, "playbooks", "capture_replay.yml")
SET = "fb"
SUBNET = "10.231.7.0/24"
DISK = "64M"
RUN_ROOT = "/run/blkfleet/replay"
RANDMIX = os.path.join(ROOT, "tests", "data", "randmix")
SERVER = "10.231.7.2"
SERVER_PORT = 8089
NFT_TABLE = "blkfleet_fb"
PUSH_PLAY = """- name: The replay role's distribution step, alone
  hosts: targets
  gather_facts: false
  become: true
  tasks:
    - name: Push, or publish once and pull
      ansible.builtin.include_role:
        name: blkfleet.core.replay
        tasks_from: push
"""


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kwargs)


def ansible_playbook():
    """ansible-playbook of the running interpreter's venv, else of PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return here if os.path.exists(here) else shutil.which("ansible-playbook")


@contextlib.contextmanager
def namespace_hosts(count):
    try:
        yield json.loads(run([sys.executable, NETNS_HOSTS, "up", "--set", SET, "--count", str(count),
                              "--subnet", SUBNET]).stdout)
    finally:
        subprocess.run([sys.executable, NETNS_HOSTS, "down", "--set", SET], check=False)


def controller_env():
    return dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))


def engine_cli(*args):
    return run([sys.executable, "-m", "blkfleet", *map(str, args)],
               env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "engine")))


@contextlib.contextmanager
def loop_devices(directory, names):
    """One loop device per name over a sparse file on tmpfs; {name: "loopN"}; detached afterwards."""
    devices = {}
    try:
        os.makedirs(directory, exist_ok=True)
        for name in names:
            backing = os.path.join(directory, f"{name}.img")
            run(["truncate", "-s", DISK, backing])
            devices[name] = os.path.basename(run(["losetup", "--show", "--find", backing]).stdout.strip())
        yield devices
    finally:
        for dev in devices.values():
            subprocess.run(["losetup", "--detach", f"/dev/{dev}"], check=False)


def inventory(hosts, devices, work, seconds, rate):
    """The inventory capture_replay.yml needs: per-host devices and paths (the hosts share one filesystem)."""
    source, targets = hosts[0], hosts[1:]
    src_dev = devices[source["name"]]
    fio = (f"fio --name=fleet --filename=/dev/{src_dev} --rw=randrw --bs=4k --direct=1 --ioengine=libaio "
           f"--iodepth=4 --size={DISK} --time_based --runtime={seconds} --rate_iops={rate} --randseed=42 "
           "--output-format=terse")
    return {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": hosts[0]["client_key"],
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "
                                       "-o LogLevel=ERROR",
            "ansible_control_path_dir": hosts[0]["control_path_dir"],
        },
        "children": {
            "sources": {"hosts": {source["name"]: {
                "ansible_host": source["address"],
                "capture_devices": [src_dev],
                "capture_output_dir": f"{work}/hosts/{source['name']}/capture",
                "capture_workload_command": fio,
            }}},
            "targets": {"hosts": {t["name"]: {
                "ansible_host": t["address"],
                "replay_device_map": {src_dev: devices[t["name"]]},
                "replay_results_path": f"{work}/hosts/{t['name']}/replay.json",
            } for t in targets}},
        },
    }}


def spread(values):
    values = [v for v in values if v is not None]
    return max(values) - min(values) if len(values) > 1 else 0.0 if values else None


def epoch(iso):
    return datetime.datetime.fromisoformat(iso).timestamp()


def one(n_targets, seconds, rate, log_dir):
    work = tempfile.mkdtemp(prefix=f"blkfleet-fleet-{n_targets}-", dir="/dev/shm")
    token = f"fb{n_targets}-{os.getpid()}"
    jobs = {}
    try:
        with namespace_hosts(n_targets + 1) as described:
            hosts = [dict(h, client_key=described["client_key"], control_path_dir=described["control_path_dir"])
                     for h in described["hosts"]]
            with loop_devices(os.path.join(work, "disks"), [h["name"] for h in hosts]) as devices:
                inv = os.path.join(work, "inventory.json")
                with open(inv, "w") as f:
                    json.dump(inventory(hosts, devices, work, seconds, rate), f, indent=2)
                results_dir = os.path.join(work, "results")
                extra = {"blkfleet_work_dir": results_dir, "replay_run_id": token}
                argv = [ansible_playbook(), "-i", inv, PLAYBOOK, "-e", json.dumps(extra)]
                env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
                t0 = time.monotonic()
                proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
                wall = time.monotonic() - t0
                log = os.path.join(log_dir, f"fleet_bench-{n_targets}.log")
                with open(log, "w") as f:
                    f.write(proc.stdout + proc.stderr)
                if proc.returncode != 0:
                    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
                    raise SystemExit(f"capture_replay.yml failed with {n_targets} targets (log {log}):\n{tail}")
                docs = {}
                for t in hosts[1:]:
                    with open(os.path.join(results_dir, "replays", f"{t['name']}.json")) as f:
                        docs[t["name"]] = json.load(f)
                    with open(os.path.join(RUN_ROOT, f"{token}-{t['name']}", "run.json")) as f:
                        jobs[t["name"]] = json.load(f)
                with open(os.path.join(results_dir, "replays", "report.json")) as f:
                    report = json.load(f)
                with open(os.path.join(results_dir, "traces", hosts[0]["name"], "capture.json")) as f:
                    captured = sum(d["queued"] for d in json.load(f)["summary"]["devices"].values())
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in os.listdir(RUN_ROOT) if os.path.isdir(RUN_ROOT) else ():
            if name.startswith(token + "-"):
                shutil.rmtree(os.path.join(RUN_ROOT, name), ignore_errors=True)
    starts = [d["start"] for d in docs.values()]
    requested = float(starts[0]["requested"])
    return {
        "targets": n_targets,
        "wall_s": wall,
        "captured_ios": captured,
        "replayed_ios_min": min(d["total"]["ios"] for d in docs.values()),
        "errors": sum(d["total"]["errors"]["count"] for d in docs.values()),
        "one_instant": len({s["requested"] for s in starts}) == 1,
        "start_wall_skew_s": spread([s["wall"] for s in starts]),
        "first_submit_skew_s": spread([s["first_submit_wall"] for s in starts]),
        "late_max_s": max(s["wall"] - float(s["requested"]) for s in starts),
        "late_median_s": statistics.median(s["wall"] - float(s["requested"]) for s in starts),
        "armed_to_start_s": requested - max(j["armed_at"] for j in jobs.values()),
        "launch_spread_s": spread([epoch(j["started"]) for j in jobs.values()]),
        "report_start_skew_s": report.get("start_skew_s"),
        "log": log,
    }


def table(rows):
    head = ("targets", "hosts", "wall s", "captured IOs", "replayed IOs/target (min)", "errors",
            "start skew ms (start.wall)", "first-IO skew ms", "late ms (median / max)", "last armed -> start s",
            "launch spread s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["targets"]), str(r["targets"] + 1), f"{r['wall_s']:.1f}", str(r["captured_ios"]),
            str(r["replayed_ios_min"]), str(r["errors"]), f"{r['start_wall_skew_s'] * 1e3:.3f}",
            f"{r['first_submit_skew_s'] * 1e3:.3f}",
            f"{r['late_median_s'] * 1e3:.3f} / {r['late_max_s'] * 1e3:.3f}", f"{r['armed_to_start_s']:.2f}",
            f"{r['launch_spread_s']:.1f}"]) + " |")
    return "\n".join(lines)


# -- distribution: push and pull of a large bundle ----------------------------------------------------------------

def big_bundle(work, megabytes):
    """A bundle of at least ``megabytes`` MB: randmix (loop1, replayed) and big0 (btrecord-format files of reads,
    never replayed), its IOs timed inside randmix's window. Returns (path, bundle id, size)."""
    replay = os.path.join(work, "replay")
    os.makedirs(replay)
    engine_cli("record", "-q", "-d", RANDMIX, "-D", replay, "-F")
    small = os.path.join(work, "small.bundle")
    window = json.loads(engine_cli("bundle", "create", "-d", replay, "-o", small, "-F", "--json", "-").stdout)[
        "result"]["capture_window"]
    os.unlink(small)
    per_bunch = 512  # btrecord's most IOs per bunch; 24 bytes a packet, 16 a bunch header
    bunches = (megabytes * 1000 * 1000) // (16 + 24 * per_bunch) + 1
    # Random 4 KiB reads over 4 TiB, in 64 different bunches of packets cycled: SSH's compression (ansible's -C)
    # gets what it would get of random IO, not of one bunch repeated (zlib sees 32 KiB back; a cycle is 768 KiB).
    rng = random.Random(42)
    cycle = [b"".join(struct.pack("<QQI4x", rng.getrandbits(30) * 8, 4096, rng.getrandbits(1))
                      for _ in range(per_bunch)) for _ in range(64)]
    with open(os.path.join(replay, "big0.replay.0"), "wb") as f:
        f.write(struct.pack("<QQQQ", 0x10000, window["first_ns"], bunches - 1, (bunches - 1) * per_bunch))
        for b in range(bunches):
            stamp = window["first_ns"] + window["span_ns"] * b // bunches
            f.write(struct.pack("<QQ", per_bunch, stamp) + cycle[b % len(cycle)])
    path = os.path.join(work, "big.bundle")
    bundle_id = engine_cli("bundle", "create", "-d", replay, "-o", path, "-F").stdout.strip()
    return path, bundle_id, os.path.getsize(path)


def hash_rate(path):
    """MB/s of SHA-256 over ``path`` here: what each check of a bundle costs a host."""
    start = time.monotonic()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return os.path.getsize(path) / 1e6 / (time.monotonic() - start)


@contextlib.contextmanager
def byte_counters(controller, server):
    """nftables counters on this machine's output hook: bytes sent to the set's subnet by the controller's
    address and by the server's. Yields a function returning {"controller": bytes, "server": bytes}."""
    rules = (f"table inet {NFT_TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
             f"    ip saddr {controller} ip daddr {SUBNET} counter comment \"controller\"\n"
             f"    ip saddr {server} ip daddr {SUBNET} counter comment \"server\"\n  }}\n}}\n")
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)
    run(["nft", "-f", "-"], input=rules)

    def read():
        doc = json.loads(run(["nft", "-j", "list", "table", "inet", NFT_TABLE]).stdout)
        found = {}
        for item in doc["nftables"]:
            rule = item.get("rule")
            if rule:
                counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
                found[rule["comment"]] = counter["bytes"]
        return found

    try:
        yield read
    finally:
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ssh_master_cpu(control_dir):
    """CPU seconds of the live SSH control masters of ``control_dir``: Ansible's ControlPersist masters carry every
    connection's bytes (compression, encryption) and outlive ansible-playbook, so RUSAGE_CHILDREN misses them."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if cmdline.startswith(b"ssh") and control_dir.encode() in cmdline:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def distribution_inventory(targets, devices, work):
    return {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": targets[0]["client_key"],
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "
                                       "-o LogLevel=ERROR",
            "ansible_control_path_dir": targets[0]["control_path_dir"],
        },
        "children": {"targets": {"hosts": {t["name"]: {
            "ansible_host": t["address"],
            "ansible_remote_tmp": f"{work}/hosts/{t['name']}/tmp",
            "replay_bundle_dir": f"{work}/hosts/{t['name']}/bundles",
            "replay_device_map": {"loop1": devices[t["name"]]},
            "replay_results_path": f"{work}/hosts/{t['name']}/replay.json",
        } for t in targets}}},
    }}


def distribute(mode, n_targets, bundle, bundle_id, log_dir):
    """One row: the distribution step of ``mode`` to ``n_targets`` targets, then a replay of loop1 on them."""
    from netns.web_server import Nginx  # tests/netns: the throwaway nginx of the pull tests

    work = tempfile.mkdtemp(prefix=f"blkfleet-dist-{mode}-{n_targets}-", dir="/dev/shm")
    token = f"fd{mode}{n_targets}-{os.getpid()}"
    web = None
    try:
        with namespace_hosts(n_targets) as described:
            targets = [dict(h, client_key=described["client_key"], control_path_dir=described["control_path_dir"])
                       for h in described["hosts"]]
            run(["ip", "addr", "add", f"{SERVER}/{SUBNET.split('/')[1]}", "dev", f"{SET}-br"])
            www = os.path.join(work, "www")
            os.makedirs(www)
            web = Nginx(www, SERVER, SERVER_PORT, os.path.join(work, "nginx")).start()
            with loop_devices(os.path.join(work, "disks"), [t["name"] for t in targets]) as devices, \
                    byte_counters(described["controller_address"], SERVER) as counters:
                inv = os.path.join(work, "inventory.json")
                with open(inv, "w") as f:
                    json.dump(distribution_inventory(targets, devices, work), f, indent=2)
                play = os.path.join(work, "push.yml")
                with open(play, "w") as f:
                    f.write(PUSH_PLAY)
                variables = {"replay_bundle_file": bundle}
                if mode == "pull":
                    variables.update(replay_publish_to=f"http://{SERVER}:{SERVER_PORT}/bundles/")
                control = described["control_path_dir"]
                before, cpu0, t0 = counters(), children_cpu() + ssh_master_cpu(control), time.monotonic()
                proc = subprocess.run([ansible_playbook(), "-i", inv, play, "-e", json.dumps(variables)],
                                      capture_output=True, text=True, cwd=ROOT, env=controller_env())
                wall, after = time.monotonic() - t0, counters()
                cpu = children_cpu() + ssh_master_cpu(control) - cpu0
                log = os.path.join(log_dir, f"fleet_bench-{mode}-{n_targets}.log")
                with open(log, "w") as f:
                    f.write(proc.stdout + proc.stderr)
                if proc.returncode != 0:
                    raise SystemExit(f"the {mode} distribution to {n_targets} targets failed (log {log}):\n"
                                     + "\n".join(proc.stdout.splitlines()[-30:]))
                sent = {k: after.get(k, 0) - before.get(k, 0) for k in ("controller", "server")}
                for t in targets:
                    held = os.path.join(work, "hosts", t["name"], "bundles", f"{bundle_id}.tar")
                    if os.path.getsize(held) != os.path.getsize(bundle):
                        raise SystemExit(f"{t['name']} does not hold the bundle after the {mode} step")
                gets = [r for r in web.requests() if r["method"] == "GET" and r["uri"].endswith(f"{bundle_id}.tar")]
                puts = [r for r in web.requests() if r["method"] == "PUT" and r["uri"].endswith(f"{bundle_id}.tar")]

                results_dir = os.path.join(work, "results")
                variables.update(replay_fetch_dir=os.path.join(results_dir, "replays"), replay_run_id=token,
                                 replay_devices=["loop1"])
                cpu1, t1 = children_cpu() + ssh_master_cpu(control), time.monotonic()
                proc = subprocess.run([ansible_playbook(), "-i", inv, os.path.join(ROOT, "playbooks", "replay.yml"),
                                       "-e", json.dumps(variables)], capture_output=True, text=True, cwd=ROOT,
                                      env=controller_env())
                replay_wall = time.monotonic() - t1
                replay_cpu = children_cpu() + ssh_master_cpu(control) - cpu1
                with open(log, "a") as f:
                    f.write(proc.stdout + proc.stderr)
                if proc.returncode != 0:
                    raise SystemExit(f"replay.yml after the {mode} distribution to {n_targets} targets failed "
                                     f"(log {log}):\n" + "\n".join(proc.stdout.splitlines()[-30:]))
                docs, jobs = {}, {}
                for t in targets:
                    with open(os.path.join(results_dir, "replays", f"{t['name']}.json")) as f:
                        docs[t["name"]] = json.load(f)
                    with open(os.path.join(RUN_ROOT, f"{token}-{t['name']}", "run.json")) as f:
                        jobs[t["name"]] = json.load(f)
    finally:
        if web is not None:
            web.stop()
        shutil.rmtree(work, ignore_errors=True)
        for name in os.listdir(RUN_ROOT) if os.path.isdir(RUN_ROOT) else ():
            if name.startswith(token + "-"):
                shutil.rmtree(os.path.join(RUN_ROOT, name), ignore_errors=True)
    starts = [d["start"] for d in docs.values()]
    return {
        "mode": mode, "targets": n_targets, "bundle_bytes": os.path.getsize(bundle),
        "controller_bytes": sent["controller"], "server_bytes": sent["server"],
        "gets": len(gets), "get_bytes": sum(r["body_bytes_sent"] for r in gets), "puts": len(puts),
        "wall_s": wall, "controller_cpu_s": cpu,
        "replayed_ios_min": min(d["total"]["ios"] for d in docs.values()),
        "start_wall_skew_s": spread([s["wall"] for s in starts]),
        "first_submit_skew_s": spread([s["first_submit_wall"] for s in starts]),
        "late_max_s": max(s["wall"] - float(s["requested"]) for s in starts),
        "replay_wall_s": replay_wall, "replay_cpu_s": replay_cpu,
        "arm_s_max": max(j["armed_at"] - epoch(j["started"]) for j in jobs.values()),
        "log": log,
    }


def distribution_table(rows):
    head = ("mode", "targets", "controller sent MB", "per target MB", "server sent MB", "GETs", "wall s",
            "controller CPU s", "replayed IOs/target", "start skew ms", "first-IO skew ms", "late max ms",
            "arming s (max)", "replay.yml s", "replay.yml CPU s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["mode"], str(r["targets"]), f"{r['controller_bytes'] / 1e6:.1f}",
            f"{r['controller_bytes'] / 1e6 / r['targets']:.1f}", f"{r['server_bytes'] / 1e6:.1f}", str(r["gets"]),
            f"{r['wall_s']:.1f}", f"{r['controller_cpu_s']:.1f}", str(r["replayed_ios_min"]),
            f"{r['start_wall_skew_s'] * 1e3:.3f}", f"{r['first_submit_skew_s'] * 1e3:.3f}",
            f"{r['late_max_s'] * 1e3:.3f}", f"{r['arm_s_max']:.1f}", f"{r['replay_wall_s']:.1f}",
            f"{r['replay_cpu_s']:.1f}"]) + " |")
    return "\n".join(lines)


def distribution_main(args):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    work = tempfile.mkdtemp(prefix="blkfleet-dist-bundle-", dir="/dev/shm")
    try:
        bundle, bundle_id, size = big_bundle(work, args.bundle_mb)
        rate = hash_rate(bundle)
        print(f"fleet_bench: bundle {bundle_id[:12]}: {size / 1e6:.1f} MB; SHA-256 here {rate:.0f} MB/s",
              file=sys.stderr)
        rows = []
        for n in (int(x) for x in args.targets.split(",")):
            for mode in args.modes.split(","):
                row = distribute(mode, n, bundle, bundle_id, args.log_dir)
                row["sha256_mb_s"] = rate
                print(f"fleet_bench: {mode} to {n}: controller sent {row['controller_bytes'] / 1e6:.1f} MB, server "
                      f"{row['server_bytes'] / 1e6:.1f} MB, {row['wall_s']:.1f} s, start skew "
                      f"{row['start_wall_skew_s'] * 1e3:.3f} ms", file=sys.stderr)
                rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(distribution_table(rows))
    print(f"\n{os.cpu_count()} CPUs; bundle {size / 1e6:.1f} MB; SHA-256 {rate:.0f} MB/s; controller and server "
          "bytes from nftables counters (IP headers included), replay of loop1 (2,000 IOs) with the two-phase start")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="1,4,8", help="comma-separated target counts (default 1,4,8)")
    parser.add_argument("--seconds", type=int, default=3, help="fio runtime captured on the source (default 3)")
    parser.add_argument("--rate", type=int, default=500, help="fio IOPS limit per direction (default 500)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--log-dir", default=tempfile.gettempdir(), help="where the playbook logs go")
    parser.add_argument("--distribution", action="store_true",
                        help="push and pull of a large bundle instead of the whole capture_replay.yml")
    parser.add_argument("--modes", default="push,pull", help="with --distribution: push, pull or both (default)")
    parser.add_argument("--bundle-mb", type=int, default=256, help="with --distribution: bundle size (default 256)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("fleet_bench.py: needs root (namespaces, sshd, loop devices)")
    if args.distribution:
        return distribution_main(args)
    rows = []
    for n in (int(x) for x in args.targets.split(",")):
        row = one(n, args.seconds, args.rate, args.log_dir)
        print(f"fleet_bench: {n} targets: {row['wall_s']:.1f} s, start skew {row['start_wall_skew_s'] * 1e3:.3f} ms, "
              f"first-IO skew {row['first_submit_skew_s'] * 1e3:.3f} ms, late max {row['late_max_s'] * 1e3:.3f} ms",
              file=sys.stderr)
        rows.append(row)
    print(table(rows))
    nproc = os.cpu_count()
    print(f"\n{nproc} CPUs; fio {args.seconds} s at {args.rate} IOPS on the source; playbook capture_replay.yml "
          "with its defaults otherwise (read-only replay, two-phase start, replay_start_margin 0.5 s, forks 20)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Scale of playbooks/capture_replay.yml over namespace hosts: wall time and replay start skew, 1/4/8 targets.

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
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="1,4,8", help="comma-separated target counts (default 1,4,8)")
    parser.add_argument("--seconds", type=int, default=3, help="fio runtime captured on the source (default 3)")
    parser.add_argument("--rate", type=int, default=500, help="fio IOPS limit per direction (default 500)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--log-dir", default=tempfile.gettempdir(), help="where the playbook logs go")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("fleet_bench.py: needs root (namespaces, sshd, loop devices)")
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

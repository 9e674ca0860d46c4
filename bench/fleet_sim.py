#!/usr/bin/env python3
"""A model of a fleet replay's distribution and launch for 10, 100 and 1,000 targets, push against pull.

Not a measurement: a bottleneck model fed with per-host costs measured by ``bench/fleet_bench.py --distribution``
(its --json rows, or the figures below, measured on a 2-CPU machine) and with the network as parameters. Each phase
takes as long as its slowest resource needs:

  distribution  max( controller uplink:  N x bytes each target costs the controller / uplink,
                     controller CPU:     N x controller CPU seconds per target / controller cores,
                     server egress:      N x bundle / server bandwidth                    (pull only),
                     target:             per-target time (transfer at the target's link, checks)
                                         x ceil(N / forks) rounds )
  launch        max( controller CPU:     N x launch CPU seconds per target / cores,
                     target:             (arming: the bundle verified and extracted, workers started)
                                         x ceil(N / forks) rounds ),
                then the start: every target armed, the controller reads each one's job (one call per host
                per poll), the start instant goes out to all at once, ``replay_start_margin`` after the last
                one armed (at least twice the slowest call): forks must be at least N here.

Push: each target costs the controller its share of SSH (bundle bytes after SSH's compression, and CPU to compress
and encrypt them) plus the module runs; pull: the controller PUTs the bundle once (uncompressed) and each target
costs it the module runs only; the server sends the bundle to every target.

    python3 bench/fleet_sim.py [--measured ROWS.json] [--bundle-mb 1000] [--uplink-gbit 10] [--server-gbit 25]
                               [--target-gbit 10] [--cores 8] [--forks 0 (= N)] [--targets 10,100,1000]
"""

import argparse
import json
import math

# Per-host costs measured by bench/fleet_bench.py --distribution (256.7 MB bundle, 1/4/8 targets, 2 CPUs; the run of
# docs/fleet.md, its rows in bench/fleet_bench_distribution.json): the marginal controller CPU per target between 1
# and 8 targets, the wire bytes per target (SSH compresses these replay files about 4x), the targets' SHA-256 rate,
# the replay playbook's CPU per target and one target's arming. task_s is an estimate, not a measurement.
MEASURED = {
    "bundle_mb": 256.7,
    "push_cpu_s_per_target": 5.5,        # ansible-playbook + ssh masters (compression, encryption) per target
    "push_wire_per_bundle_byte": 0.24,   # bytes on the wire per bundle byte (ssh -C on random-IO replay files)
    "pull_cpu_s_per_target": 0.31,       # the module runs only
    "pull_ctrl_bytes_per_target": 0.11e6,  # SSH control traffic per target (module payloads, results)
    "sha256_mb_s": 932.0,                # a target's hash rate (each check of the bundle is one pass)
    "task_s": 1.5,                       # one module task on one host, uncontended (estimate: connection, payload)
    "launch_cpu_s_per_target": 1.1,      # replay.yml's controller CPU per target (launch, start, wait, fetch)
    "arm_base_s": 1.05,                  # arming of one target besides reading the bundle (1.6 s measured in all)
}


def from_rows(rows):
    """Per-host costs from fleet_bench --distribution rows (the smallest and largest target counts per mode)."""
    costs = dict(MEASURED)

    def marginal(mode, key):
        got = sorted((r["targets"], r[key]) for r in rows if r["mode"] == mode)
        if len(got) < 2 or got[-1][0] == got[0][0]:
            return None
        return (got[-1][1] - got[0][1]) / (got[-1][0] - got[0][0])

    push_cpu, pull_cpu = marginal("push", "controller_cpu_s"), marginal("pull", "controller_cpu_s")
    push_bytes, pull_bytes = marginal("push", "controller_bytes"), marginal("pull", "controller_bytes")
    bundle = rows[0]["bundle_bytes"]
    costs["bundle_mb"] = bundle / 1e6
    if push_cpu:
        costs["push_cpu_s_per_target"] = push_cpu
    if pull_cpu:
        costs["pull_cpu_s_per_target"] = pull_cpu
    if push_bytes:
        costs["push_wire_per_bundle_byte"] = push_bytes / bundle
    if pull_bytes is not None:
        costs["pull_ctrl_bytes_per_target"] = max(pull_bytes, 0.0)
    costs["sha256_mb_s"] = rows[0].get("sha256_mb_s", costs["sha256_mb_s"])
    launch = [marginal(mode, "replay_cpu_s") for mode in ("push", "pull")]
    launch = [x for x in launch if x]
    if launch:
        costs["launch_cpu_s_per_target"] = sum(launch) / len(launch)
    return costs


def phase(terms):
    """(seconds, name of the limiting term) of a phase: its slowest resource."""
    name, seconds = max(terms.items(), key=lambda kv: kv[1])
    return seconds, name


def simulate(n, mode, costs, bundle_mb, uplink, server, target_link, cores, forks):
    """Seconds of distribution and launch for ``n`` targets; bandwidths in bytes/s."""
    bundle = bundle_mb * 1e6
    scale = bundle_mb / costs["bundle_mb"]  # per-byte costs scale with the bundle
    rounds = math.ceil(n / min(forks or n, n))
    check = bundle / (costs["sha256_mb_s"] * 1e6)
    if mode == "push":
        wire = bundle * costs["push_wire_per_bundle_byte"]
        # a target: receives at its link (its share of the uplink is in the uplink term), then checks the file
        # (the module's hash, the engine's verify, the copy into place: three passes)
        per_target = costs["task_s"] + wire / target_link + 3 * check
        terms = {
            "controller uplink": n * wire / uplink,
            "controller CPU": n * costs["push_cpu_s_per_target"] * scale / cores,
            "targets": per_target * rounds,
        }
    else:
        per_target = costs["task_s"] + bundle / target_link + check  # hashed as it arrives, then verified once
        terms = {
            "controller uplink": (bundle + n * costs["pull_ctrl_bytes_per_target"]) / uplink,
            "controller CPU": n * costs["pull_cpu_s_per_target"] / cores,
            "server egress": n * bundle / server,
            "targets": per_target * rounds,
        }
    dist, dist_limit = phase(terms)
    arm = costs["arm_base_s"] + 2 * check  # the engine verifies and extracts the bundle before it arms
    launch, launch_limit = phase({
        "controller CPU": n * costs["launch_cpu_s_per_target"] / cores,
        "targets (arming)": (costs["task_s"] + arm) * rounds,
    })
    return {"targets": n, "mode": mode, "distribution_s": dist, "distribution_limit": dist_limit,
            "launch_s": launch, "launch_limit": launch_limit, "total_s": dist + launch,
            "controller_bytes": (n * bundle * costs["push_wire_per_bundle_byte"]) if mode == "push"
            else bundle + n * costs["pull_ctrl_bytes_per_target"]}


def table(rows):
    head = ("targets", "mode", "controller sends GB", "distribution s", "limited by", "launch s", "limited by",
            "total s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            f"{r['targets']:,}", r["mode"], f"{r['controller_bytes'] / 1e9:.1f}", f"{r['distribution_s']:.0f}",
            r["distribution_limit"], f"{r['launch_s']:.0f}", r["launch_limit"], f"{r['total_s']:.0f}"]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measured", help="fleet_bench.py --distribution --json rows (default: the figures above)")
    parser.add_argument("--bundle-mb", type=float, default=1000, help="bundle size (default 1000)")
    parser.add_argument("--uplink-gbit", type=float, default=10, help="controller uplink, Gbit/s (default 10)")
    parser.add_argument("--server-gbit", type=float, default=25,
                        help="web server or object store egress, Gbit/s (default 25)")
    parser.add_argument("--target-gbit", type=float, default=10, help="each target's link, Gbit/s (default 10)")
    parser.add_argument("--cores", type=int, default=8, help="controller CPU cores (default 8)")
    parser.add_argument("--forks", type=int, default=0, help="Ansible forks (default 0: as many as targets)")
    parser.add_argument("--targets", default="10,100,1000", help="target counts (default 10,100,1000)")
    args = parser.parse_args(argv)
    costs = MEASURED
    if args.measured:
        with open(args.measured) as f:
            costs = from_rows(json.load(f))
    rows = [simulate(n, mode, costs, args.bundle_mb, args.uplink_gbit * 1e9 / 8, args.server_gbit * 1e9 / 8,
                     args.target_gbit * 1e9 / 8, args.cores, args.forks)
            for n in (int(x) for x in args.targets.split(",")) for mode in ("push", "pull")]
    print(table(rows))
    print(f"\nbundle {args.bundle_mb:g} MB; controller uplink {args.uplink_gbit:g} Gbit/s, {args.cores} cores; server "
          f"{args.server_gbit:g} Gbit/s; targets {args.target_gbit:g} Gbit/s; forks "
          f"{args.forks or 'as many as targets'}; per-host costs: {json.dumps(costs, sort_keys=True)}")


if __name__ == "__main__":
    main()

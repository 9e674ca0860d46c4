#!/usr/bin/env python3
"""High-rate tail, side by side in one run: blkfleet vs the C btreplay on an unthrottled two-job random trace.

As root. fio (2 jobs, random 4 KiB, libaio depth 32 each, no rate limit: as fast as the loop device goes) is
captured for real on a tmpfs-backed loop device, converted (blkfleet native; btrecord for btreplay), then
replayed onto a second loop device in alternating rounds (blkfleet, btreplay, blkfleet, ...) while the target
is traced; each replay capture is compared with the original (``blkfleet compare``). The table gives every
round and the medians: issue-time error p50/p99, IOs matched, and ratios. A blkfleet round also says how many
workers it chose and why.

    sudo python3 bench/tail_bench.py [--seconds 5] [--rounds 3] [--rw randrw] [--extra ARG] [--json FILE]
                                     [--baseline-engine DIR] [--baseline-extra ARG]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import captured, loop_devices, workdir
from replay_bench import BTRECORD, DISK, blkfleet, compare, figures, fio, replay_blkfleet, replay_btreplay


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rw", default="randrw", help="fio --rw (default randrw)")
    ap.add_argument("--extra", action="append", default=[], metavar="ARG",
                    help="one more blkfleet replay argument (repeat: --extra=-c --extra=1)")
    ap.add_argument("--baseline-engine", metavar="DIR",
                    help="also replay with the blkfleet engine in DIR (its engine/ directory) every round")
    ap.add_argument("--baseline-extra", action="append", metavar="ARG",
                    help="also replay with this blkfleet and these replay arguments instead of --extra every round "
                    "(repeat; with --baseline-engine, that engine's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid():
        raise SystemExit("tail_bench.py needs root (loop devices, tracefs)")
    baseline = args.baseline_engine or args.baseline_extra is not None
    baseline_extra = args.extra if args.baseline_extra is None else args.baseline_extra
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    report = {"load_average_before": load_before, "rounds": []}
    with workdir("blkfleet-tbench-") as work, loop_devices(work, [DISK, DISK]) as (dev_a, dev_b):
        orig = os.path.join(work, "orig")
        with captured([dev_a], orig):
            ios, iops = fio(dev_a, args.seconds, [f"--rw={args.rw}", "--bs=4k", "--iodepth=32", "--numjobs=2"])
        report.update(fio_ios=ios, fio_iops=round(iops))
        a = os.path.basename(dev_a)
        native, c_files = os.path.join(work, "native"), os.path.join(work, "c")
        os.makedirs(native)
        os.makedirs(c_files)
        assert blkfleet("record", "-q", "-d", orig, "-D", native, a).returncode == 0
        subprocess.run([BTRECORD, "-d", orig, "-D", c_files, a], check=True, capture_output=True)
        for r in range(args.rounds):
            rdir = os.path.join(work, f"round{r}")
            os.makedirs(rdir)
            cap, info = replay_blkfleet(native, dev_a, dev_b, rdir, "blkfleet", args.extra)
            with open(os.path.join(rdir, "blkfleet.json")) as f:
                doc = json.load(f)
            ours = {**figures(compare(orig, cap, a, os.path.basename(dev_b))), "ios": info["ios"],
                    "workers": doc["worker_count"], "feeder": doc["feeder"], "cpu_s": info["cpu_s"]}
            cap, info = replay_btreplay(c_files, dev_b, os.path.join(rdir, "bt"), timeout=args.seconds * 3 + 20)
            theirs = {**figures(compare(orig, cap, a, os.path.basename(dev_b))), **info}
            report["rounds"].append({"blkfleet": ours, "btreplay": theirs})
            if baseline:
                cap, info = replay_blkfleet(native, dev_a, dev_b, rdir, "baseline", baseline_extra,
                                            engine=args.baseline_engine)
                report["rounds"][-1]["baseline"] = {**figures(compare(orig, cap, a, os.path.basename(dev_b))),
                                                    "ios": info["ios"], "cpu_s": info["cpu_s"]}
            print(f"round {r + 1}: blkfleet issue p50/p99 {ours.get('issue_p50_us'):.0f}/{ours.get('issue_p99_us'):.0f}"
                  f" us ({ours.get('matched')} matched, {ours['workers']['workers']} workers), btreplay "
                  f"{theirs.get('issue_p50_us'):.0f}/{theirs.get('issue_p99_us'):.0f} us ({theirs.get('matched')})",
                  file=sys.stderr)
    with open("/proc/loadavg") as f:
        report["load_average_after"] = f.read().split()[:3]
    med = {}
    tools = ("blkfleet", "btreplay") + (("baseline",) if baseline else ())
    for tool in tools:
        rows = [r[tool] for r in report["rounds"] if r[tool].get("issue_p99_us") is not None]
        med[tool] = {k: statistics.median(row[k] for row in rows) for k in
                     ("issue_p50_us", "issue_p99_us", "matched", "iops_error_pct") if rows}
    report["median"] = med
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"\nunthrottled 2-job {args.rw} 4 KiB: {report['fio_ios']} IOs captured ({report['fio_iops']} IOPS); load "
          f"average {' '.join(load_before)} before, {' '.join(report['load_average_after'])} after")
    print(f"{'round':<8}{'replayer':<10}{'issue p50':>10}{'issue p99':>11}{'matched':>9}{'IOPS err %':>11}  workers")
    for i, r in enumerate(report["rounds"]):
        for tool in tools:
            x = r[tool]
            w = x.get("workers", {}).get("workers", "") if tool == "blkfleet" else ""
            print(f"{i + 1:<8}{tool:<10}{x.get('issue_p50_us') or float('nan'):>10.0f}"
                  f"{x.get('issue_p99_us') or float('nan'):>11.0f}{x.get('matched') or 0:>9}"
                  f"{x.get('iops_error_pct') or float('nan'):>11.2f}  {w}")
    b, c = med["blkfleet"], med["btreplay"]
    if b and c:
        print(f"{'median':<8}{'blkfleet':<10}{b['issue_p50_us']:>10.0f}{b['issue_p99_us']:>11.0f}{b['matched']:>9.0f}")
        print(f"{'median':<8}{'btreplay':<10}{c['issue_p50_us']:>10.0f}{c['issue_p99_us']:>11.0f}{c['matched']:>9.0f}")
        print(f"btreplay / blkfleet: issue p99 {c['issue_p99_us'] / max(b['issue_p99_us'], 1e-9):.2f}x, "
              f"p50 {c['issue_p50_us'] / max(b['issue_p50_us'], 1e-9):.2f}x")
    if med.get("baseline"):
        x = med["baseline"]
        print(f"{'median':<8}{'baseline':<10}{x['issue_p50_us']:>10.0f}{x['issue_p99_us']:>11.0f}{x['matched']:>9.0f}")


if __name__ == "__main__":
    main()

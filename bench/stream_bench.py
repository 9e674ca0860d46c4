#!/usr/bin/env python3
"""Memory and start-up against trace length, side by side in one run: blkfleet replay vs the C btreplay.

For each length (default 2 M, 20 M and 100 M IOs) it writes a synthetic trace (``synth_trace.py``: random 4 KiB
reads from two recorded CPUs, native files for blkfleet and btrecord files for btreplay, under ``--dir`` on disk),
then replays it on a tmpfs-backed loop device, as fast as possible (-N: the lengths stay affordable; memory and
start-up do not depend on the pace), each tool in turn, ``--rounds`` times. Measured from outside, the same way
for both:

- peak RSS of the whole process tree (the sum over its processes, sampled every 20 ms; shared pages count once
  per process, so this is an upper bound) and peak PSS (shared pages split between the processes);
- time from the command's start to its first IO: the target's reads-in-flight or reads-completed counters
  (/proc/diskstats) polled every 0.5 ms;

and, for blkfleet, what its results JSON says (time to first IO, results written after the last completion).
It prints a table with ratios and writes an SVG plot of peak RSS against IOs (``--svg``).

    sudo python3 bench/stream_bench.py [--ios 2000000 20000000 100000000] [--rounds 1] [--json F] [--svg F]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from common import loop_devices, workdir
from synth_trace import write

from blkfleet.report import svg

BTREPLAY = shutil.which("btreplay") or "/usr/sbin/btreplay"
STUCK_S = 30


def _tree(pid):
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    except OSError:
        pass
    return out


def _field(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _diskstats(name):
    """(reads completed, IOs in flight) of a block device."""
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == name:
                return int(fields[3]), int(fields[11])
    return 0, 0


def run(cmd, device, timeout):
    """Run ``cmd``; (exit code, wall s, first IO s after the start or None, peak tree RSS MiB, peak PSS MiB)."""
    name = os.path.basename(device)
    before = _diskstats(name)[0]
    first = [None]
    done = threading.Event()
    started = time.monotonic()

    def watch():
        while not done.is_set() and first[0] is None:
            reads, inflight = _diskstats(name)
            if reads != before or inflight:
                first[0] = time.monotonic() - started
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher.start()
    peak_rss = peak_pss = 0
    n = 0
    progress, moved = _diskstats(name)[0], time.monotonic()
    try:
        while proc.poll() is None:
            now = time.monotonic()
            reads = _diskstats(name)[0]
            if reads != progress:
                progress, moved = reads, now
            if now - started > timeout or now - moved > STUCK_S:
                proc.kill()  # btreplay 1.2 can hang (at exit, or before): no IO for STUCK_S seconds
                break
            pids = _tree(proc.pid)
            peak_rss = max(peak_rss, sum(_field(f"/proc/{p}/status", "VmRSS:") for p in pids))
            if n % 5 == 0:
                peak_pss = max(peak_pss, sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
            n += 1
            time.sleep(0.02)
        proc.wait()
    finally:
        done.set()
        watcher.join()
    err = proc.stderr.read()
    wall = time.monotonic() - started
    if proc.returncode not in (0, -9):
        print(f"warning: {cmd[0]} exited {proc.returncode}: {err.strip()[-300:]}", file=sys.stderr)
    return proc.returncode, wall, first[0], peak_rss / 1024, peak_pss / 1024


def blkfleet(trace, device, work, timeout):
    mapfile = os.path.join(work, "map")
    with open(mapfile, "w") as f:
        f.write(f"loop1 {device}\n")
    res = os.path.join(work, "res.json")
    if os.path.exists(res):
        os.unlink(res)
    code, wall, first, rss, pss = run([sys.executable, "-m", "blkfleet", "replay", "-N", "-d", trace, "-M", mapfile,
                                       "--json", res, "loop1"], device, timeout)
    doc = json.load(open(res)) if os.path.exists(res) else {}
    timing = doc.get("timing") or {}
    return {"exit": code, "wall_s": round(wall, 2), "first_io_s": first, "rss_mb": round(rss, 1),
            "pss_mb": round(pss, 1), "ios": (doc.get("total") or {}).get("ios"),
            "own_first_io_s": timing.get("command_start_to_first_io_s"),
            "results_after_last_s": timing.get("last_completion_to_results_s"),
            "feeder_stalls": (doc.get("feeder") or {}).get("stalls"), "iops": (doc.get("total") or {}).get("iops")}


def btreplay(trace, device, work, timeout):
    mapfile = os.path.join(work, "btmap")
    with open(mapfile, "w") as f:
        f.write(f"loop1 {os.path.basename(device)}\n")  # btreplay maps to names under /dev
    code, wall, first, rss, pss = run([BTREPLAY, "-N", "-d", trace, "-M", mapfile, "loop1"], device, timeout)
    return {"exit": code, "wall_s": round(wall, 2), "first_io_s": first, "rss_mb": round(rss, 1),
            "pss_mb": round(pss, 1), "hung_killed": code == -9}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ios", type=int, nargs="+", default=[2_000_000, 20_000_000, 100_000_000])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dir", default="/var/tmp/blkfleet-stream-bench", help="where the traces are written")
    ap.add_argument("--keep", action="store_true", help="keep the traces")
    ap.add_argument("--no-btreplay", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--svg")
    args = ap.parse_args()
    if os.geteuid():
        raise SystemExit("stream_bench.py needs root (loop devices)")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    report = {"load_average_before": load, "rows": []}
    os.makedirs(args.dir, exist_ok=True)
    with workdir("blkfleet-sbench-") as work, loop_devices(work, [256 << 20]) as (dev,):
        for ios in args.ios:
            native_dir = os.path.join(args.dir, f"native-{ios}")
            bt_dir = os.path.join(args.dir, f"btrecord-{ios}")
            t0 = time.monotonic()
            if not os.path.isdir(native_dir):
                write(native_dir, "loop1", ios, 200_000, fmt="native")
            if not args.no_btreplay and not os.path.isdir(bt_dir):
                write(bt_dir, "loop1", ios, 200_000, fmt="btrecord")
            print(f"{ios} IOs: traces ready in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            timeout = 60 + ios / 50_000  # btreplay 1.2 can hang at exit: killed then
            rounds = {"blkfleet": [], "btreplay": []}
            for _r in range(args.rounds):  # alternating
                rounds["blkfleet"].append(blkfleet(native_dir, dev, work, timeout))
                if not args.no_btreplay:
                    rounds["btreplay"].append(btreplay(bt_dir, dev, work, timeout))
            row = {"ios": ios, "rounds": rounds}
            for tool, rs in rounds.items():
                if rs:
                    row[tool] = {k: statistics.median(r[k] for r in rs if r.get(k) is not None)
                                 for k in rs[0] if isinstance(rs[0][k], (int, float)) and not isinstance(rs[0][k], bool)
                                 and any(r.get(k) is not None for r in rs)}
            report["rows"].append(row)
            print(json.dumps(row), file=sys.stderr)
            if not args.keep:
                shutil.rmtree(native_dir, ignore_errors=True)
                shutil.rmtree(bt_dir, ignore_errors=True)
    with open("/proc/loadavg") as f:
        report["load_average_after"] = f.read().split()[:3]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"\nload average before {' '.join(load)}, after {' '.join(report['load_average_after'])}; "
          f"medians of {args.rounds} round(s), -N")
    print(f"{'IOs':>12} | {'peak RSS MiB':>24} | {'peak PSS MiB':>16} | {'first IO s':>22} | {'blkfleet own':>20}")
    print(f"{'':>12} | {'blkfleet btreplay ratio':>24} | {'blkfleet btreplay':>16} | "
          f"{'blkfleet btreplay ratio':>22} | {'first IO  results':>20}")
    for row in report["rows"]:
        b, c = row.get("blkfleet", {}), row.get("btreplay", {})

        def f(v, fmt="{:.1f}"):
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        ratio_rss = b.get("rss_mb", 0) / c["rss_mb"] if c.get("rss_mb") else None
        ratio_first = b.get("first_io_s", 0) / c["first_io_s"] if c.get("first_io_s") else None
        print(f"{row['ios']:>12} | {f(b.get('rss_mb')):>8} {f(c.get('rss_mb')):>8} {f(ratio_rss, '{:.2f}'):>6} | "
              f"{f(b.get('pss_mb')):>8} {f(c.get('pss_mb')):>7} | {f(b.get('first_io_s'), '{:.3f}'):>8} "
              f"{f(c.get('first_io_s'), '{:.3f}'):>8} {f(ratio_first, '{:.2f}'):>5} | "
              f"{f(b.get('own_first_io_s'), '{:.3f}'):>9} {f(b.get('results_after_last_s'), '{:.3f}'):>9}")
    if args.svg:
        series = []
        for tool in ("blkfleet", "btreplay"):
            pts = [(row["ios"] / 1e6, row[tool]["rss_mb"]) for row in report["rows"] if row.get(tool, {}).get("rss_mb")]
            if pts:
                series.append((f"{tool} (peak RSS of the process tree)", [p[0] for p in pts], [p[1] for p in pts]))
        text = svg.line_chart("rss_vs_ios", "Peak RSS against trace length (replay -N)", series,
                              "trace length (million IOs)", "peak RSS (MiB)", ymin=0, markers=True)
        with open(args.svg, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

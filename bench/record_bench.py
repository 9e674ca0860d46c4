#!/usr/bin/env python3
"""blkfleet record vs the Debian btrecord, side by side in one run: time (median of N) and peak RSS.

By default it captures a real trace first (as root): fio 4 KiB random read/write, libaio depth 16, on a loop
device over tmpfs, traced with the ftrace blk tracer (queue events: Q, G, P, U — four records per IO), about
400 k IOs / 1.6 M records. ``--trace DIR --device DEV`` uses existing DEV.blktrace.CPU files instead.
A 4x larger copy of the trace (the files concatenated four times) shows that memory does not grow with size.

    sudo python3 bench/record_bench.py [--ios 400000] [--runs 3] [--trace DIR --device DEV] [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

from common import GNU_TIME, captured, drops, gnu_time, loop_devices, workdir

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"


def capture_trace(work, ios):
    """Capture fio on a fresh tmpfs-backed loop device; return (trace dir, device name, fio IOs).

    The blk tracer (raw mode) with the queue action mask writes Q, G, P and U: four records per IO, as
    blktrace does for btrecord."""
    out = os.path.join(work, "trace")
    with loop_devices(work, [256 << 20]) as (dev,), \
            captured([dev], out, mode="raw", act_mask="queue", buffer_kb=16384) as summary:
        fio = subprocess.run(
            ["fio", "--name=bench", f"--filename={dev}", "--direct=1", "--ioengine=libaio",
             "--rw=randrw", "--bs=4k", "--iodepth=16", "--size=256M", f"--number_ios={ios}",
             "--io_size=100G", "--randrepeat=1", "--output-format=json"],
            capture_output=True, text=True, check=True)
    jobs = json.loads(fio.stdout[fio.stdout.index("{"):])["jobs"]
    done = sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs)
    if drops(summary):
        raise SystemExit(f"capture dropped {drops(summary)} events: rerun with a larger buffer")
    return out, os.path.basename(dev), done


def timed(cmd):
    """(wall seconds, peak RSS in MB) of a command that must succeed."""
    proc, wall, _cpu, rss = gnu_time(cmd, stdout=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return wall, rss


def measure(cmd, runs):
    results = [timed(cmd) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def files_equal(a, b):
    names = sorted(os.listdir(b))
    return names == sorted(os.listdir(a)) and all(
        open(os.path.join(a, n), "rb").read() == open(os.path.join(b, n), "rb").read() for n in names)


def count_records(trace_dir, device):
    from blkfleet.percpu import find_per_cpu
    from blkfleet.trace import TraceReader
    return sum(1 for p in find_per_cpu(trace_dir, device, "blktrace") for _ in TraceReader(p))


def scaled_copy(trace_dir, device, factor, dest):
    """The trace's per-CPU files concatenated ``factor`` times (times repeat: fine for --compat)."""
    os.makedirs(dest)
    for name in os.listdir(trace_dir):
        if ".blktrace." in name:
            data = open(os.path.join(trace_dir, name), "rb").read()
            with open(os.path.join(dest, name), "wb") as f:
                for _ in range(factor):
                    f.write(data)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ios", type=int, default=400_000, help="fio IOs to capture (default %(default)s)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trace", help="existing trace directory (skip the capture)")
    ap.add_argument("--device", help="device name of --trace")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit("bench needs GNU time (Debian package 'time') to measure peak memory")
    with workdir("blkfleet-bench-") as work:
        if args.trace:
            trace, dev, fio_ios = args.trace, args.device, None
        else:
            trace, dev, fio_ios = capture_trace(work, args.ios)
        records = count_records(trace, dev)
        ours = [sys.executable, "-m", "blkfleet", "record", "-q", "-d", trace]
        dirs = {k: os.path.join(work, k) for k in ("c", "compat", "native", "c4", "compat4")}
        for d in dirs.values():
            os.makedirs(d)
        rows = []
        for label, cmd in (
            ("btrecord (C)", [BTRECORD, "-d", trace, "-D", dirs["c"], dev]),
            ("blkfleet --compat", ours + ["--compat", "-D", dirs["compat"], dev]),
            ("blkfleet native", ours + ["-D", dirs["native"], dev]),
        ):
            wall, rss = measure(cmd, args.runs)
            rows.append({"tool": label, "seconds": round(wall, 3), "peak_rss_mb": round(rss, 1)})
        identical = files_equal(dirs["compat"], dirs["c"])
        big = scaled_copy(trace, dev, 4, os.path.join(work, "trace4"))
        c4 = timed([BTRECORD, "-d", big, "-D", dirs["c4"], dev])
        p4 = timed([sys.executable, "-m", "blkfleet", "record", "-q", "--compat", "-d", big, "-D",
                    dirs["compat4"], dev])
        identical4 = files_equal(dirs["compat4"], dirs["c4"])
    c_time = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_c"] = round(c_time / r["seconds"], 2)
    result = {
        "trace": {"device": dev, "records": records, "fio_ios": fio_ios},
        "runs": args.runs, "rows": rows, "compat_identical": identical,
        "x4": {"records": records * 4, "btrecord_s": round(c4[0], 3), "blkfleet_compat_s": round(p4[0], 3),
               "blkfleet_peak_rss_mb": round(p4[1], 1), "compat_identical": identical4},
    }
    print(f"trace: {records} records, {fio_ios or '?'} fio IOs ({dev}); median of {args.runs} runs")
    print(f"{'tool':<20}{'seconds':>9}{'peak RSS MB':>13}{'C time / ours':>15}")
    for r in rows:
        print(f"{r['tool']:<20}{r['seconds']:>9.3f}{r['peak_rss_mb']:>13.1f}{r['speedup_vs_c']:>15.2f}")
    print(f"--compat output byte-identical to btrecord: {identical}")
    x4 = result["x4"]
    print(f"4x trace ({x4['records']} records): btrecord {x4['btrecord_s']:.3f} s, blkfleet --compat "
          f"{x4['blkfleet_compat_s']:.3f} s, peak RSS {x4['blkfleet_peak_rss_mb']:.1f} MB, identical: "
          f"{x4['compat_identical']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if identical and identical4 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""blkfleet import of every format against blkfleet record and btrecord, side by side in one run.

It writes the same --ios IOs (4 KiB and larger random reads and writes, 0 to 200 µs apart, one device) in every
format blkfleet imports (MSR Cambridge, Alibaba and Tencent CSV, fio iolog v3, blkparse text, a mapped CSV) and as
a blktrace capture of Q records only (what ``blkfleet capture``'s default events mode writes), then times, for
--rounds rounds in rotating order: ``blkfleet import FORMAT`` of each, ``blkfleet record`` and btrecord 1.2.0 of
the capture, and ``blkfleet stats`` of the imported replay files. The table gives the median seconds per million
IOs, the median CPU seconds per million IOs and the largest peak RSS (GNU time). --scale K also imports an MSR
trace K times as long once (memory must stay flat). The last row is a floor, timed in this process: splitting
the MSR file into its fields and ``int()`` of its three numbers per IO (time, offset, size), nothing else, what
any import of that text in Python pays at least.

    python3 bench/import_bench.py [--ios 2000000] [--rounds 3] [--scale 4] [--json FILE]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time

from common import gnu_time, workdir

from blkfleet.trace import TraceRecord, TraceWriter

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"
Q_READ, Q_WRITE = 0x00190001, 0x001A0001


def ios_of(n, seed=1):
    rng = random.Random(seed)
    t = 0
    for _ in range(n):
        t += rng.randrange(200_000)
        yield t, rng.randrange(1 << 26) * 8, 4096 * rng.choice((1, 1, 1, 2, 16)), rng.random() < 0.6


def write_inputs(directory, n):
    """Every format's file of the same IOs; returns {name: (path, import argv tail)}."""
    paths = {k: os.path.join(directory, f) for k, f in (("msr", "t.msr.csv"), ("alibaba", "t.ali.csv"),
                                                       ("tencent", "t.tencent.csv"), ("fio-iolog", "t.iolog"),
                                                       ("blkparse", "t.blkparse"), ("csv", "t.mapped.csv"))}
    out = {k: open(p, "w") for k, p in paths.items()}
    out["fio-iolog"].write("fio version 3 iolog\n0 /dev/sdb add\n0 /dev/sdb open\n")
    cap = os.path.join(directory, "cap")
    os.mkdir(cap)
    with TraceWriter(os.path.join(cap, "sdb.blktrace.0")) as trace:
        for t, sector, size, read in ios_of(n):
            off = sector * 512
            out["msr"].write(f"{128166372000000000 + t // 100},h,0,{'Read' if read else 'Write'},{off},{size},"
                             f"{t % 9000}\n")
            out["alibaba"].write(f"0,{'R' if read else 'W'},{off},{size},{1577808000000000 + t // 1000}\n")
            out["tencent"].write(f"{1538323200 + t // 10 ** 9},{sector},{size // 512},{0 if read else 1},1063\n")
            out["fio-iolog"].write(f"{t // 1000} /dev/sdb {'read' if read else 'write'} {off} {size}\n")
            out["blkparse"].write(f"  8,16   0 {0:8d} {t // 10 ** 9:5d}.{t % 10 ** 9:09d}  4242  Q  "
                                  f"{'R' if read else 'W'}S {sector} + {size // 512} [fio]\n")
            out["csv"].write(f"{t},{off},{size},{'r' if read else 'w'}\n")
            trace.write(TraceRecord(t, sector, size, Q_READ if read else Q_WRITE, 4242, 8 << 20 | 16, 0, 0, b"", 0,
                                    7))
    for f in out.values():
        f.close()
    argv = {k: [k, p] for k, p in paths.items()}
    argv["csv"] += ["--columns", "time=0,offset=1,size=2,op=3", "--time-unit", "ns", "--ops", "r=read,w=write"]
    return argv, cap


def text_floor(path, ios, rounds):
    """CPU seconds per million IOs of the least Python does with an MSR file: its fields split out, and its time,
    offset and size columns turned into ints (the best of ``rounds``)."""
    with open(path, "rb") as f:
        text = f.read()
    best = None
    for _ in range(rounds):
        start = time.process_time()
        fields = text.replace(b"\n", b",").split(b",")
        for column in (0, 4, 5):
            list(map(int, fields[column:-1:7]))
        took = time.process_time() - start
        best = took if best is None else min(best, took)
        del fields
    return {"s_per_M": best / ios * 1e6, "cpu_s_per_M": best / ios * 1e6, "peak_rss_mb": None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ios", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=0)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    py = [sys.executable, "-m", "blkfleet"]
    with workdir("blkfleet-import-bench-") as d:
        argv, cap = write_inputs(d, args.ios)
        tools = {f"import {k}": py + ["import", *v[:1], v[1], "-q", "--force", "-D", os.path.join(d, "o-" + k),
                                      *v[2:]] for k, v in argv.items()}
        tools["record (native)"] = py + ["record", "-q", "-d", cap, "-D", os.path.join(d, "rec"), "sdb"]
        os.mkdir(os.path.join(d, "rec"))
        if os.path.exists(BTRECORD):
            os.mkdir(os.path.join(d, "btrec"))
            tools["btrecord 1.2.0"] = [BTRECORD, "-d", cap, "-D", os.path.join(d, "btrec"), "sdb"]
        tools["stats (imported msr)"] = py + ["stats", os.path.join(d, "o-msr"), "--json", os.path.join(d, "s.json")]
        times = {k: [] for k in tools}
        names = list(tools)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                if name.startswith("stats") and not os.path.isdir(os.path.join(d, "o-msr")):
                    continue
                proc, wall, cpu, rss = gnu_time(tools[name], stdout=open(os.devnull, "w"))
                if proc.returncode:
                    sys.exit(f"{name} failed: {proc.stderr[-500:]}")
                times[name].append((wall, cpu, rss))
        rows = {}
        for name, got in times.items():
            rows[name] = {"s_per_M": statistics.median(w for w, _c, _r in got) / args.ios * 1e6,
                          "cpu_s_per_M": statistics.median(c for _w, c, _r in got) / args.ios * 1e6,
                          "peak_rss_mb": max(r for _w, _c, r in got)}
        if args.scale:
            big = os.path.join(d, "big.csv")
            src = open(argv["msr"][1]).read().splitlines()
            span = int(src[-1][:18]) - int(src[0][:18]) + 1  # filetime ticks: each copy comes after the last
            with open(big, "w") as f:
                for k in range(args.scale):
                    f.write("".join(f"{int(line[:18]) + k * span}{line[18:]}\n" for line in src))
            proc, wall, cpu, rss = gnu_time(py + ["import", "msr", big, "-q", "-D", os.path.join(d, "o-big")])
            if proc.returncode:
                sys.exit(f"import of the long trace failed: {proc.stderr[-500:]}")
            rows[f"import msr x{args.scale}"] = {"s_per_M": wall / (args.ios * args.scale) * 1e6,
                                                  "cpu_s_per_M": cpu / (args.ios * args.scale) * 1e6,
                                                  "peak_rss_mb": rss}
        rows["floor: split + int() (msr)"] = text_floor(argv["msr"][1], args.ios, args.rounds)
    load = os.getloadavg()[0]
    print(f"{args.ios:,} IOs, {args.rounds} rounds, load average {load:.1f}")
    print(f"{'tool':28s} {'s per M IOs':>12s} {'CPU s per M':>12s} {'peak RSS MiB':>12s}")
    for name, row in rows.items():
        rss = "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.1f}"
        print(f"{name:28s} {row['s_per_M']:12.2f} {row['cpu_s_per_M']:12.2f} {rss:>12s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ios": args.ios, "rounds": args.rounds, "load": load, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

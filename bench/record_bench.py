#!/usr/bin/env python3
"""blkfleet record vs the Debian btrecord, side by side in one run, on captures made by ``blkfleet capture``.

By default (as root) it captures the same fio workload twice with ``blkfleet capture`` (4 KiB random
read/write, libaio depth 16, on a loop device over tmpfs, --ios IOs each):

  events   the default mode: the block_bio_queue tracepoint, one Q record per IO;
  raw      ``--mode raw``: the kernel's blk tracer, the records blktrace writes (Q, G, P, U: four per IO);
  raw-all  (``--modes raw-all``) ``--mode raw --act-mask all``: every blk tracer event, as blktrace records by
           default (Q, G, I, D, C, P, U, ...: six per IO here).

``--capture DIR`` takes existing capture directories instead (any DEV.blktrace.N files: a blktrace capture from
another host too). Each capture is converted by btrecord, ``blkfleet record`` (native) and ``blkfleet record
--compat`` in a rotating order for --rounds rounds; the table gives median, min and max seconds, the largest
peak RSS (GNU time, each tool's own process), btrecord's median over ours, and the same for CPU seconds (user +
system: less disturbed by other work on a shared machine than wall time). Every round's --compat output is
compared byte for byte with btrecord's. Then a copy of each capture --scale times as long (the files repeated,
times shifted so that they keep rising) is converted once by each tool: time grows with the trace, memory
does not. ``--baseline-engine DIR`` adds another engine (a directory holding a ``blkfleet`` package, e.g.
``git archive main engine | tar -x -C /tmp/base``, then /tmp/base/engine) as two more tools in the same rounds.
Last, the replay files of each capture (native and btrecord) are read back (``iter_ios``, ``chunks()``,
``bunches()``; seconds per million IOs, median of the rounds) by this engine and by the baseline engine, if any.

    sudo python3 bench/record_bench.py [--ios 2000000] [--rounds 5] [--modes events,raw] [--capture DIR ...]
                                       [--scale 4] [--baseline-engine DIR] [--keep DIR] [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

from common import GNU_TIME, ROOT, gnu_time, loop_devices, workdir

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"
DISK = 512 << 20
MODES = {"events": ["--mode", "events"], "raw": ["--mode", "raw"], "raw-all": ["--mode", "raw", "--act-mask", "all"]}
BUFFER_KB = {"events": 4096, "raw": 16384, "raw-all": 32768}  # per CPU; no drops at fio's full rate here


def blkfleet(*args, check=True):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"blkfleet {' '.join(map(str, args))}: {run.stderr.strip()}")
    return run


def capture(work, mode, ios):
    """Capture fio with ``blkfleet capture`` on a fresh tmpfs-backed loop device; (directory, device, fio IOs)."""
    out = os.path.join(work, f"capture-{mode}")
    with loop_devices(work, [DISK]) as (dev,):
        start = ["capture", "start", "--backend", "ftrace", *MODES[mode], "-d", dev, "-D", out,
                 "--buffer-size", BUFFER_KB[mode]]
        for _ in range(200):  # another capture (a test elsewhere) owns the tracer: wait for it
            run = blkfleet(*start, check=False)
            if "in use by another capture" not in run.stderr:
                break
            time.sleep(3)
        if run.returncode != 0:
            raise SystemExit(f"capture start: {run.stderr.strip()}")
        try:
            fio = subprocess.run(
                ["fio", "--name=bench", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--rw=randrw",
                 "--bs=4k", "--iodepth=16", f"--size={DISK}", f"--number_ios={ios}", "--io_size=1T",
                 "--randrepeat=1", "--norandommap", "--output-format=json"],
                capture_output=True, text=True, check=True)
        finally:
            summary = json.loads(blkfleet("capture", "stop", "-D", out).stdout)
    os.unlink(os.path.join(work, "disk0.img"))  # fio wrote into it: give the tmpfs memory back
    jobs = json.loads(fio.stdout[fio.stdout.index("{"):])["jobs"]
    done = sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs)
    if summary["drops"] or summary["queued"] != done:
        raise SystemExit(f"{mode} capture: {summary['queued']} of {done} IOs, {summary['drops']} dropped: rerun "
                         "(or raise BUFFER_KB)")
    return out, os.path.basename(dev), done


def trace_files(directory, device):
    sys.path.insert(0, os.path.join(ROOT, "engine"))
    from blkfleet.percpu import find_per_cpu

    return find_per_cpu(directory, device, "blktrace")


def only_device(directory):
    from blkfleet.percpu import find_devices

    devices = find_devices(directory, "blktrace")
    if len(devices) != 1:
        raise SystemExit(f"{directory}: expected the traces of one device, found {devices or 'none'}")
    return devices[0]


def walk(data):
    """(byte order, offset of every record) of a trace file's bytes."""
    order = "<" if struct.unpack_from("<I", data)[0] >> 8 == 0x656174 else ">"
    size = 48 if data[0 if order == "<" else 3] == 7 else 64  # the version: the magic's low byte
    pdu = struct.Struct(order + "H").unpack_from
    at = 46 if size == 48 else 50
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += size + pdu(data, pos + at)[0]
    return order, offsets


def stats(directory, device):
    """Records and queued IOs of a capture (its capture.json's counters, else counted)."""
    from blkfleet.trace.queued import queued_chunks

    records = ios = size = 0
    for path in trace_files(directory, device):
        data = open(path, "rb").read()
        records += len(walk(data)[1]) if data else 0
        ios += sum(len(c) for c in queued_chunks(path))
        size += len(data)
    return {"records": records, "ios": ios, "bytes": size}


def scaled_copy(directory, device, factor, dest):
    """The capture's files repeated ``factor`` times, every record's time shifted by a whole number of the
    capture's span (plus 1 s) per repetition, so that times keep rising (native) and genesis stays the first."""
    os.makedirs(dest)
    files = [(p, open(p, "rb").read()) for p in trace_files(directory, device)]
    walks = [walk(data) if data else ("<", []) for _p, data in files]
    times = [struct.unpack_from(o + "Q", d, off + 8)[0] for (_p, d), (o, offs) in zip(files, walks) for off in offs]
    shift = (max(times) - min(times) + 10**9) if times else 0
    for (path, data), (order, offsets) in zip(files, walks):
        time_at = struct.Struct(order + "Q")
        with open(os.path.join(dest, os.path.basename(path)), "wb") as f:
            f.write(data)
            for k in range(1, factor):
                copy = bytearray(data)
                for off in offsets:
                    time_at.pack_into(copy, off + 8, time_at.unpack_from(data, off + 8)[0] + k * shift)
                f.write(copy)
    return dest


def tools(trace, device, baseline):
    """{label: (command builder(out dir), environment)}."""
    ours = [sys.executable, "-m", "blkfleet", "record", "-q", "-d", trace]
    out = {"btrecord (C)": (lambda d: [BTRECORD, "-d", trace, "-D", d, device], None),
           "blkfleet native": (lambda d: ours + ["-D", d, device], None),
           "blkfleet --compat": (lambda d: ours + ["--compat", "-D", d, device], None)}
    if baseline:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(baseline))
        out["baseline native"] = (lambda d: ours + ["-D", d, device], env)
        out["baseline --compat"] = (lambda d: ours + ["--compat", "-D", d, device], env)
    return out


def timed(cmd, env=None):
    """(wall seconds, peak RSS in MiB, user + system CPU seconds) of a command that must succeed (the wall time
    taken here: GNU time gives hundredths only)."""
    start = time.perf_counter()
    proc, _wall, cpu, rss = gnu_time(cmd, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return wall, rss, cpu


def fresh(directory):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    return directory


def identical(a, b):
    names = sorted(n for n in os.listdir(b) if ".replay." in n)
    return bool(names) and names == sorted(n for n in os.listdir(a) if ".replay." in n) and all(
        open(os.path.join(a, n), "rb").read() == open(os.path.join(b, n), "rb").read() for n in names)


def bench(name, trace, device, args, work):
    """Rounds of every tool on one capture, then the scaled copy; the result row."""
    info = stats(trace, device)
    table = tools(trace, device, args.baseline_engine)
    outs = {label: os.path.join(work, f"out-{name}-{i}") for i, label in enumerate(table)}
    runs = {label: [] for label in table}
    same = True
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        labels = list(table)
        labels = labels[r % len(labels):] + labels[:r % len(labels)]  # rotate: no tool always goes first
        for label in labels:
            build, env = table[label]
            runs[label].append(timed(build(fresh(outs[label])), env))
        same = same and all(identical(outs[label], outs["btrecord (C)"]) for label in table
                            if label.endswith("--compat"))
    load.append(os.getloadavg()[0])
    c_median = statistics.median(r[0] for r in runs["btrecord (C)"])
    c_cpu = statistics.median(r[2] for r in runs["btrecord (C)"])
    rows = []
    for label, results in runs.items():
        walls = [r[0] for r in results]
        median, cpu = statistics.median(walls), statistics.median(r[2] for r in results)
        rows.append({"tool": label, "median_s": round(median, 3), "min_s": round(min(walls), 3),
                     "max_s": round(max(walls), 3), "peak_rss_mb": round(max(r[1] for r in results), 1),
                     "btrecord_over_ours": round(c_median / median, 2), "cpu_s": round(cpu, 2),
                     "btrecord_over_ours_cpu": round(c_cpu / max(cpu, 0.01), 2),
                     "round_ratios": [round(c[0] / w[0], 2) for c, w in zip(runs["btrecord (C)"], results)]})
    engines = [("this engine", os.path.join(ROOT, "engine"))]
    if args.baseline_engine:
        engines.append(("baseline", os.path.abspath(args.baseline_engine)))
    reads = reading({"native": outs["blkfleet native"], "btrecord": outs["btrecord (C)"]}, engines, args.rounds)
    scaled = None
    if args.scale > 1:
        big = scaled_copy(trace, device, args.scale, os.path.join(work, f"scaled-{name}"))
        big_table = tools(big, device, None)
        scaled = {"factor": args.scale, "ios": info["ios"] * args.scale}
        for label, (build, env) in big_table.items():
            wall, rss, _cpu = timed(build(fresh(outs[label])), env)
            scaled[label] = {"seconds": round(wall, 3), "peak_rss_mb": round(rss, 1)}
        scaled["compat_identical"] = identical(outs["blkfleet --compat"], outs["btrecord (C)"])
        shutil.rmtree(big, ignore_errors=True)
    for d in outs.values():
        shutil.rmtree(d, ignore_errors=True)
    return {"capture": name, "device": device, **info, "rounds": args.rounds, "rows": rows,
            "compat_identical": same, "load_average": [round(x, 2) for x in load], "scaled": scaled,
            "reading_s_per_million_ios": reads}


READ = """
import sys, time
from blkfleet.replayfile import iter_ios, open_replay
way, paths = sys.argv[1], sys.argv[2:]
ios = 0
start = time.perf_counter()
for path in paths:
    with open_replay(path) as r:
        if way == "iter_ios":
            for _io in iter_ios(r):
                ios += 1
        elif way == "chunks":
            ios += sum(len(c) for c in r.chunks())
        else:
            ios += sum(len(p) for _t, p in r.bunches())
print(time.perf_counter() - start, ios)
"""


def reading(outs, engines, rounds):
    """Seconds per million IOs to read the replay files in ``outs`` ({format: directory}), per engine and way
    (median of ``rounds``, in alternating order)."""
    out = {}
    for fmt, directory in outs.items():
        paths = sorted(os.path.join(directory, n) for n in os.listdir(directory) if ".replay." in n)
        for way in ("iter_ios", "chunks", "bunches"):
            runs = {}
            for r in range(rounds):
                for name, engine in (engines if r % 2 == 0 else engines[::-1]):
                    env = dict(os.environ, PYTHONPATH=engine)
                    run = subprocess.run([sys.executable, "-c", READ, way, *paths], capture_output=True, text=True,
                                         env=env)
                    if run.returncode != 0:  # an engine without chunks()
                        continue
                    seconds, ios = run.stdout.split()
                    runs.setdefault(name, []).append(float(seconds) * 1e6 / int(ios))
            for name, values in runs.items():
                out.setdefault(fmt, {}).setdefault(name, {})[way] = round(statistics.median(values), 3)
    return out


def show(result):
    print(f"\n{result['capture']}: {result['device']}, {result['ios']} IOs, {result['records']} records, "
          f"{result['bytes'] / 1e6:.1f} MB; {result['rounds']} rounds; load average "
          f"{result['load_average'][0]} -> {result['load_average'][1]}")
    print(f"{'tool':<20}{'median s':>10}{'min':>8}{'max':>8}{'peak RSS MiB':>13}{'btrecord / ours':>17}"
          f"{'CPU s':>8}{'(CPU)':>7}")
    for r in result["rows"]:
        print(f"{r['tool']:<20}{r['median_s']:>10.3f}{r['min_s']:>8.3f}{r['max_s']:>8.3f}"
              f"{r['peak_rss_mb']:>13.1f}{r['btrecord_over_ours']:>17.2f}{r['cpu_s']:>8.2f}"
              f"{r['btrecord_over_ours_cpu']:>7.2f}")
    print(f"--compat output byte-identical to btrecord's in every round: {result['compat_identical']}")
    s = result["scaled"]
    if s:
        parts = [f"{label} {v['seconds']:.2f} s / {v['peak_rss_mb']:.1f} MB" for label, v in s.items()
                 if isinstance(v, dict)]
        print(f"{s['factor']}x as long ({s['ios']} IOs), one run each: {'; '.join(parts)}; --compat identical: "
              f"{s['compat_identical']}")
    for fmt, engines in result["reading_s_per_million_ios"].items():
        ways = "; ".join(f"{name}: " + ", ".join(f"{way} {v:.3f}" for way, v in by_way.items())
                         for name, by_way in engines.items())
        print(f"reading its {fmt} replay files, s per million IOs: {ways}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ios", type=int, default=2_000_000, help="fio IOs per capture (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="events,raw", help="captures to make: events, raw, raw-all (default "
                    "%(default)s)")
    ap.add_argument("--capture", action="append", default=[], metavar="DIR",
                    help="an existing capture directory (repeatable); nothing is captured then")
    ap.add_argument("--scale", type=int, default=4, help="length of the scaled copy (1: none; default 4)")
    ap.add_argument("--baseline-engine", metavar="DIR", help="another engine to run as two more tools")
    ap.add_argument("--keep", metavar="DIR", help="move the captures made into DIR (to --capture them again)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit("bench needs GNU time (Debian package 'time') to measure peak memory")
    results = []
    with workdir("blkfleet-bench-") as work:
        inputs = [(os.path.basename(os.path.normpath(d)), d, only_device(d)) for d in args.capture]
        for mode in ([] if args.capture else [m for m in args.modes.split(",") if m]):
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r} ({', '.join(MODES)})")
            trace, dev, _done = capture(work, mode, args.ios)
            inputs.append((mode, trace, dev))
        for name, trace, dev in inputs:
            result = bench(name, trace, dev, args, work)
            show(result)
            results.append(result)
            if args.keep and not args.capture:
                os.makedirs(args.keep, exist_ok=True)
                shutil.move(trace, os.path.join(args.keep, name))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "results": results}, f, indent=2)
    ok = all(r["compat_identical"] and (not r["scaled"] or r["scaled"]["compat_identical"]) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Capture overhead and drop threshold, side by side in one run (root; needs fio and losetup).

1. Overhead: fio 4 KiB random IO at the device's full rate on a tmpfs-backed loop device, without capture
   and under each capture backend/mode (``blkfleet capture start ... ; fio ; capture stop``), rounds
   interleaved so that drift of the machine hits every variant alike; median IOPS and the ratio to the
   uncaptured median are printed, plus whether every IO was captured (Q count == fio's IO count).
2. Drop threshold: fio rate-limited at increasing IOPS (``--rate_iops``) under capture, for the default and a
   larger buffer, until drops appear or the device's full rate is reached; prints the event rate (records/s)
   of the last clean and first dropping step.

    sudo python3 bench/capture_bench.py [--runtime 5] [--rounds 3] [--rw randread,randrw] [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.path.join(HERE, "..", "engine")
ENV = dict(os.environ, PYTHONPATH=os.path.abspath(ENGINE))

VARIANTS = {
    "none": None,
    "kernel-only": "kernel-only",
    "ftrace-events": ["--backend", "ftrace", "--mode", "events"],
    "ftrace-events-q": ["--backend", "ftrace", "--mode", "events", "--no-completions"],
    "ftrace-raw-splice": ["--backend", "ftrace", "--mode", "raw"],
    "ftrace-raw-read": ["--backend", "ftrace", "--mode", "raw", "--no-splice"],
    "blktrace": ["--backend", "blktrace"],
}


def blkfleet(*args, check=True):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *args], capture_output=True, text=True, env=ENV)
    if check and run.returncode not in (0, 1):
        raise RuntimeError(f"blkfleet {' '.join(args)}: {run.stderr.strip()}")
    return run


def fio(dev, rw, runtime, iodepth, numjobs, rate_iops=None):
    cmd = ["fio", "--name=bench", f"--filename={dev}", "--direct=1", f"--rw={rw}", "--bs=4k",
           "--ioengine=libaio", f"--iodepth={iodepth}", f"--numjobs={numjobs}", "--group_reporting",
           "--time_based", f"--runtime={runtime}", "--randrepeat=0", "--norandommap", "--output-format=json"]
    if rate_iops:
        cmd.append(f"--rate_iops={max(1, rate_iops // numjobs)}")
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    job = json.loads(run.stdout[run.stdout.index("{"):])["jobs"][0]
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    return {"iops": job["read"]["iops"] + job["write"]["iops"], "ios": ios}


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def measure(dev, rw, variant, runtime, iodepth, numjobs, workdir, rate_iops=None, buffer=None):
    args = VARIANTS[variant]
    if args is None:
        return dict(fio(dev, rw, runtime, iodepth, numjobs, rate_iops), variant=variant)
    if args == "kernel-only":  # the blk tracer writing its ring buffer, nobody reading: the kernel's share
        sys.path.insert(0, os.path.abspath(ENGINE))
        from blkfleet.capture import tracefs

        lock = tracefs.TracerLock().acquire(timeout=300)  # other users of the tracer: wait for them
        with lock, tracefs.configure([dev], act_mask="queue", lock=lock) as cap:
            cap.start()
            result = fio(dev, rw, runtime, iodepth, numjobs, rate_iops)
            cap.stop()
        return dict(result, variant=variant)
    out = tempfile.mkdtemp(prefix=f"{variant}-", dir=workdir)
    start = ["capture", "start", "-d", dev, "-D", out, *args]
    if buffer:
        start += ["--buffer-size", str(buffer), "--buffer-count", "1"]
    for _ in range(100):  # another capture owns the tracer (a test elsewhere): wait for it
        run = blkfleet(*start, check=False)
        if "in use by another capture" not in run.stderr:
            break
        time.sleep(3)
    if run.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        return {"variant": variant, "error": run.stderr.strip()}
    pid = json.loads(run.stdout)["pid"]
    try:
        result = fio(dev, rw, runtime, iodepth, numjobs, rate_iops)
        result["capture_cpu_s"] = cpu_seconds(pid)
    finally:
        t0 = time.monotonic()
        stop = blkfleet("capture", "stop", "-D", out)
        stop_s = time.monotonic() - t0
    summary = json.loads(stop.stdout)
    shutil.rmtree(out, ignore_errors=True)
    result.update(variant=variant, queued=summary["queued"], records=summary["records"], drops=summary["drops"],
                  drop_reports=summary["drop_reports"], capture_s=summary["duration"], stop_s=round(stop_s, 2),
                  complete=summary["queued"] == result["ios"] and not summary["drops"])
    return result


def overhead(dev, rw, args, workdir):
    rounds = {v: [] for v in args.variants}
    for i in range(args.rounds):
        for variant in args.variants:
            r = measure(dev, rw, variant, args.runtime, args.iodepth, args.numjobs, workdir)
            rounds[variant].append(r)
            print(f"  {rw} round {i + 1} {variant:18s} "
                  + (f"error: {r['error']}" if "error" in r else f"{r['iops']:10.0f} IOPS"
                     + (f"  queued {r['queued']}/{r['ios']} drops {r['drops']} reader CPU {r['capture_cpu_s']} s"
                     f" stop {r['stop_s']} s"
                        if "queued" in r else "")), flush=True)
            if "error" in r:
                break
    base = statistics.median(r["iops"] for r in rounds["none"])
    table = {}
    for variant, results in rounds.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            table[variant] = {"error": results[0]["error"]}
            continue
        med = statistics.median(r["iops"] for r in ok)
        table[variant] = {"iops_median": round(med), "iops": [round(r["iops"]) for r in ok],
                          "ratio": round(med / base, 3), "overhead_pct": round(100 * (1 - med / base), 1)}
        if "queued" in ok[0]:
            table[variant]["all_ios_captured"] = all(r["complete"] for r in ok)
            table[variant]["drops"] = sum(r["drops"] for r in ok)
            table[variant]["reader_cpu_pct"] = round(
                100 * statistics.median(r["capture_cpu_s"] for r in ok) / args.runtime, 1)
    return table


def drop_threshold(dev, variant, buffer, full_rate, args, workdir):
    """Step the offered IOPS up to the full rate; the event rate of the last clean and first dropping step."""
    steps = [int(full_rate * f) for f in (0.25, 0.5, 0.75, 1.0)] + [None]
    last_ok = first_drop = None
    for rate in steps:
        r = measure(dev, "randread", variant, args.runtime, args.iodepth, args.numjobs, workdir, rate, buffer)
        if "error" in r:
            return {"error": r["error"]}
        ev_rate = round(r["records"] / args.runtime)  # events written while fio ran
        step = {"offered_iops": rate or "full", "iops": round(r["iops"]), "events_per_s": ev_rate,
                "drops": r["drops"]}
        print(f"  drops {variant} buffer {buffer or 'default'} KiB/CPU: {step}", flush=True)
        if r["drops"] or r["drop_reports"]:
            first_drop = step
            break
        last_ok = step
    return {"last_clean": last_ok, "first_drops": first_drop}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", type=int, default=5, help="seconds per fio run (default 5)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iodepth", type=int, default=32)
    ap.add_argument("--numjobs", type=int, default=2)
    ap.add_argument("--rw", default="randread,randrw")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="default: all of " + ", ".join(VARIANTS))
    ap.add_argument("--size", default="1G", help="loop device size (sparse file on /dev/shm)")
    ap.add_argument("--no-drops", action="store_true", help="skip the drop-threshold sweep")
    ap.add_argument("--big-buffer", type=int, default=32768, help="larger buffer, KiB per CPU (default 32768)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    args.variants = args.variants.split(",")
    if "none" not in args.variants:
        args.variants.insert(0, "none")
    if os.geteuid() != 0:
        sys.exit("capture_bench: needs root")
    workdir = tempfile.mkdtemp(prefix="capture-bench-", dir="/dev/shm")
    backing = os.path.join(workdir, "disk.img")
    subprocess.run(["truncate", "-s", args.size, backing], check=True)
    dev = subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                         check=True).stdout.strip()
    report = {"device": dev, "cpus": os.cpu_count(), "kernel": os.uname().release, "runtime_s": args.runtime,
              "iodepth": args.iodepth, "numjobs": args.numjobs, "overhead": {}, "drops": {}}
    try:
        subprocess.run(["fio", "--name=fill", f"--filename={dev}", "--rw=write", "--bs=1M", "--direct=1",
                        "--output=/dev/null"], check=True)
        for rw in args.rw.split(","):
            print(f"{rw}: 4 KiB, libaio, iodepth {args.iodepth} x {args.numjobs} jobs, {args.runtime} s per run")
            report["overhead"][rw] = overhead(dev, rw, args, workdir)
        if not args.no_drops:
            full = report["overhead"].get("randread", {}).get("none", {}).get("iops_median")
            full = full or fio(dev, "randread", args.runtime, args.iodepth, args.numjobs)["iops"]
            for variant in ("ftrace-events", "ftrace-raw-splice"):
                for buffer in (None, args.big_buffer):
                    key = f"{variant} buffer={buffer or 'default'}"
                    report["drops"][key] = drop_threshold(dev, variant, buffer, full, args, workdir)
    finally:
        subprocess.run(["losetup", "-d", dev])
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for rw, table in report["overhead"].items():
        print(f"{rw}: IOPS without vs with capture (median of {args.rounds})")
        for variant, row in table.items():
            if "error" in row:
                print(f"  {variant:18s} unavailable: {row['error']}")
            else:
                extra = (f"  all IOs captured: {row['all_ios_captured']}, drops {row['drops']}, "
                         f"reader CPU {row['reader_cpu_pct']} %" if "drops" in row else "")
                print(f"  {variant:18s} {row['iops_median']:9d} IOPS  ratio {row['ratio']:.3f}  "
                      f"({row['overhead_pct']:+.1f} % fewer){extra}")
    for key, row in report["drops"].items():
        print(f"drops begin, {key}: {row}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

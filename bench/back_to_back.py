#!/usr/bin/env python3
"""Back-to-back replays must all end cleanly: N x ``-N`` and N x ``-x 4`` of one real trace, each under a
hard timeout, with the C btreplay doing the same beside them (it can hang at exit: SIGKILL after the timeout).

As root:  python3 bench/back_to_back.py [--runs 10] [--seconds 4] [--json FILE]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from common import captured, loop_devices, workdir

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"
BTREPLAY = shutil.which("btreplay") or "/usr/sbin/btreplay"
DISK = 256 << 20


def timed(cmd, timeout):
    """(exit code or 'killed', wall seconds) of a command under a hard timeout."""
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        code = "killed"
    return code, round(time.monotonic() - t, 2), (err or "").strip().splitlines()[-1:] if code else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="replays per mode (default 10)")
    ap.add_argument("--seconds", type=int, default=4, help="length of the captured workload (default 4)")
    ap.add_argument("--json")
    args = ap.parse_args()
    with workdir("blkfleet-b2b-") as work, loop_devices(work, [DISK, DISK]) as (dev_a, dev_b):
        a, b = os.path.basename(dev_a), os.path.basename(dev_b)
        orig = os.path.join(work, "orig")
        with captured([dev_a], orig):
            subprocess.run(["fio", "--name=w", f"--filename={dev_a}", "--direct=1", "--ioengine=libaio",
                            "--rw=randrw", "--bs=4k", "--iodepth=16", "--numjobs=2", "--time_based",
                            f"--runtime={args.seconds}", "--output=/dev/null"], check=True)
        native, c_files, bt_in = (os.path.join(work, d) for d in ("native", "c", "bt-in"))
        for d in (native, c_files, bt_in):
            os.makedirs(d)
        subprocess.run([sys.executable, "-m", "blkfleet", "record", "-q", "-d", orig, "-D", native, a], check=True)
        subprocess.run([BTRECORD, "-d", orig, "-D", c_files, a], check=True, stdout=subprocess.DEVNULL)
        for f in os.listdir(c_files):
            shutil.copy(os.path.join(c_files, f), os.path.join(bt_in, f.replace(a, b, 1)))
        mapfile = os.path.join(work, "map")
        with open(mapfile, "w") as f:
            f.write(f"{a} {dev_b}\n")
        timeout = args.seconds * 3 + 30
        report = {}
        for label, flags in (("-N", ["-N"]), ("-x 4", ["-x", "4"])):
            ours = [timed([sys.executable, "-m", "blkfleet", "replay", "-d", native, "-M", mapfile, *flags, a],
                          timeout) for _ in range(args.runs)]
            theirs = [timed([BTREPLAY, "-d", bt_in, *flags, b], timeout) for _ in range(args.runs)]
            report[label] = {"blkfleet": ours, "btreplay": theirs}
            for name, runs in (("blkfleet", ours), ("btreplay", theirs)):
                clean = sum(1 for code, _w, _e in runs if code == 0)
                walls = [w for _c, w, _e in runs]
                print(f"{label:5} {name:9} clean {clean}/{len(runs)}  wall {min(walls)}-{max(walls)} s  "
                      f"{[c for c, _w, _e in runs if c != 0] or ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

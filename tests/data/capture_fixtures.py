#!/usr/bin/env python3
"""Capture the real-kernel trace fixtures under tests/data/<workload>/ (run as root).

Each workload runs on a fresh loop device over a sparse file on tmpfs while the ftrace blk tracer records
every event type (act_mask all, trace_clock mono; the capture's raw mode). Its ring-buffer pages become
``<workload>/DEV.blktrace.CPU`` files (the real device name is kept) and ``<workload>/meta.json`` records
the device, the commands, the kernel, the date and the counts. Needs fio, mkfs.ext4, fstrim, losetup, and
blkfleet importable (the project's venv).

    sudo .venv/bin/python tests/data/capture_fixtures.py [--out DIR] [workload ...]
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile

from blkfleet.capture import tracefs
from blkfleet.capture.foreground import traced

HERE = os.path.dirname(os.path.abspath(__file__))

ACT_MASK = "all"
CLOCK = "mono"
DISK_SIZE = 128 << 20


def fio_cmd(dev, *jobs, **options):
    """A fio command line: global ``options`` then one ``--name`` section per job dict."""
    cmd = ["fio", "--output-format=json", f"--filename={dev}", "--direct=1", "--ioengine=libaio"]
    cmd += [f"--{k}={v}" for k, v in options.items()]
    for job in jobs:
        cmd += [f"--{k}={v}" for k, v in job.items()]
    return cmd


def randmix(dev, mnt):
    return [fio_cmd(dev, {"name": "randmix", "rw": "randrw", "rwmixread": 60, "bs": "4k", "iodepth": 8,
                          "size": "64M", "number_ios": 2000, "randrepeat": 1})]


def seqlarge(dev, mnt):
    return [fio_cmd(dev, {"name": "seqwrite", "rw": "write", "bs": "1M", "iodepth": 4, "size": "48M"},
                    {"name": "seqread", "rw": "read", "bs": "1M", "iodepth": 4, "size": "48M",
                     "stonewall": 1})]


def fs(dev, mnt):
    script = (
        f"set -e; cd {mnt}; "
        "for i in 1 2 3 4; do dd if=/dev/urandom of=f$i bs=64k count=4 conv=fsync status=none; done; "
        "mkdir d; for i in 1 2 3 4 5 6 7 8; do echo x > d/s$i; done; sync d/s8; "
        "rm f1 f3; sync; "
        "dd if=/dev/urandom of=big bs=1M count=2 oflag=direct status=none; sync; rm big; sync"
    )
    return [
        ["mkfs.ext4", "-q", "-F", "-E", "discard,lazy_itable_init=0,lazy_journal_init=0", dev],
        ["mount", "-o", "nodiscard", dev, mnt],
        ["sh", "-c", script],
        ["fstrim", mnt],
        ["umount", mnt],
    ]


def multicpu(dev, mnt):
    return [fio_cmd(dev, {"name": "cpu0", "rw": "randread", "cpus_allowed": 0, "offset": "0"},
                    {"name": "cpu1", "rw": "randwrite", "cpus_allowed": 1, "offset": "32M"},
                    bs="4k", iodepth=4, size="32M", number_ios=600)]


WORKLOADS = {"randmix": randmix, "seqlarge": seqlarge, "fs": fs, "multicpu": multicpu}


def fio_ios(stdout):
    """Total IOs of a fio JSON report."""
    jobs = json.loads(stdout[stdout.index("{"):])["jobs"]
    return sum(j["read"]["total_ios"] + j["write"]["total_ios"] + j["trim"]["total_ios"] for j in jobs)


def run_workload(commands):
    ios = None
    for cmd in commands:
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({run.returncode}): {run.stderr.strip()}")
        if cmd[0] == "fio":
            ios = (ios or 0) + fio_ios(run.stdout)
    return ios


def capture(name, workdir, outdir):
    """Run one workload on a new loop device, capture it into ``outdir``; return meta.json contents."""
    backing = os.path.join(workdir, f"{name}.img")
    with open(backing, "wb") as f:
        f.truncate(DISK_SIZE)
    dev = subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                         check=True).stdout.strip()
    mnt = os.path.join(workdir, f"{name}.mnt")
    os.makedirs(mnt, exist_ok=True)
    try:
        commands = WORKLOADS[name](dev, mnt)
        devname, _ = tracefs.device_trace_dir(dev)
        for old in glob.glob(os.path.join(outdir, "*.blktrace.*")):
            os.unlink(old)
        scratch = os.path.join(workdir, f"{name}.capture")
        with traced([dev], scratch, mode="raw", act_mask=ACT_MASK, clock=CLOCK) as summary:
            ios = run_workload(commands)
        for f in os.listdir(scratch):
            if ".blktrace." in f:
                shutil.move(os.path.join(scratch, f), os.path.join(outdir, f))
    finally:
        subprocess.run(["umount", mnt], capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=True)
    dev_summary = summary["devices"][devname]
    return {
        "workload": name,
        "device": devname,
        "dev": dev_summary["dev"],
        "disk_size": DISK_SIZE,
        "commands": [shlex.join(map(str, cmd)).replace(dev, "$DEV").replace(mnt, "$MNT") for cmd in commands],
        "fio_version": subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip(),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "tracer": {"backend": "ftrace", "act_mask": ACT_MASK, "trace_clock": CLOCK},
        "fio_ios": ios,
        "records": dev_summary["records"],
        "queued": dev_summary["queued"],
        "queued_bytes": dev_summary["bytes"],
        "files": {f: {"records": c["records"], "queued": c["queued"], "size": c["file_bytes"]}
                  for f, c in dev_summary["files"].items()},
        "lost": summary["lost"],
        "skipped_bytes": summary["skipped_bytes"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"some of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--out", default=HERE, help="parent of the <workload>/ dirs (default: %(default)s)")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        raise SystemExit("capture_fixtures.py must run as root")
    missing = [t for t in ("fio", "mkfs.ext4", "fstrim", "losetup") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)}")
    workdir = tempfile.mkdtemp(prefix="blkfleet-fixtures-", dir="/dev/shm")
    try:
        for name in args.workloads or list(WORKLOADS):
            outdir = os.path.join(args.out, name)
            os.makedirs(outdir, exist_ok=True)
            meta = capture(name, workdir, outdir)
            if meta["lost"] or meta["skipped_bytes"]:
                raise SystemExit(f"{name}: events were lost ({meta['lost']}, {meta['skipped_bytes']} bytes)")
            with open(os.path.join(outdir, "meta.json"), "w") as f:
                json.dump(meta, f, indent=2)
                f.write("\n")
            size = sum(v["size"] for v in meta["files"].values())
            print(f"{name}: {meta['device']} {meta['records']} records, {meta['queued']} Q, {size} bytes")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Long synthetic replay files, written fast (columns, no Python object per IO): blkfleet native and btrecord.

Random 4 KiB reads over a device of ``--disk`` bytes, ``--ios`` in all, spread over ``--cpus`` recorded CPUs
(files ``DEV.replay.N``), interleaved in time at ``--iops`` in total (CPU k's IOs at k, k + cpus, ...).

    python3 bench/synth_trace.py -D DIR --ios 20000000 --iops 100000 [--format native|btrecord] [DEV]
"""

import argparse
import os
import random
import sys
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine"))

from blkfleet.replayfile import compat, native  # noqa: E402

NATIVE_BUNCH = 4096
BTRECORD_BUNCH = 512
GENESIS = 1_000_000_000


def _sectors(rng, n, blocks, bs):
    per = bs // 512
    return array("Q", [rng.randrange(blocks) * per for _ in range(n)])


def write_native(path, cpu, ios, step_ns, offset_ns, blocks, bs=4096, seed=1):
    """One native file of ``ios`` reads at GENESIS + offset_ns + k * step_ns."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.write(bytes(native.HEADER.size))
        bunches = 0
        last = GENESIS
        for first in range(0, ios, NATIVE_BUNCH):
            n = min(NATIVE_BUNCH, ios - first)
            t0 = GENESIS + offset_ns + first * step_ns
            packets = bytearray(native.PACKET.size * n)
            view = memoryview(packets)
            view.cast("Q")[0::3] = _sectors(rng, n, blocks, bs)
            words = view.cast("I")
            words[2::6] = array("I", [bs]) * n
            words[3::6] = array("I", range(0, n * step_ns, step_ns))
            words[5::6] = array("I", [4242]) * n
            f.write(native.BUNCH.pack(n, 0, t0) + packets)
            bunches += 1
            last = t0 + (n - 1) * step_ns
        f.seek(0)
        f.write(native.HEADER.pack(native.MAGIC, native.PLAIN_VERSION, native.HEADER.size, native.F_COMPLETE,
                                   GENESIS + offset_ns, last, ios, bunches, 0, cpu, NATIVE_BUNCH, 0))


def write_btrecord(path, ios, step_ns, offset_ns, blocks, bs=4096, seed=1):
    """One btrecord file: bunches of BTRECORD_BUNCH reads, each bunch at its first IO's time."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.write(bytes(compat.HEADER.size))
        bunches = 0
        last_n = 0
        for first in range(0, ios, BTRECORD_BUNCH):
            n = min(BTRECORD_BUNCH, ios - first)
            packets = bytearray(compat.PACKET.size * n)
            view = memoryview(packets)
            q = view.cast("Q")
            q[0::3] = _sectors(rng, n, blocks, bs)
            q[1::3] = array("Q", [bs]) * n
            view.cast("I")[4::6] = array("I", [1]) * n  # rw 1: a read
            f.write(compat.BUNCH.pack(n, GENESIS + offset_ns + first * step_ns) + packets)
            bunches += 1
            last_n = n
        f.seek(0)  # btrecord's counts leave out the last bunch
        f.write(compat.HEADER.pack(compat.VERSION, GENESIS, bunches - 1, ios - last_n))


def write(directory, device, ios, iops, cpus=2, disk=256 << 20, fmt="native", bs=4096):
    """The files of one trace; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    step_all = int(1e9 / iops)
    step = step_all * cpus
    blocks = disk // bs
    paths = []
    for cpu in range(cpus):
        count = ios // cpus + (1 if cpu < ios % cpus else 0)
        path = os.path.join(directory, f"{device}.replay.{cpu}")
        if fmt == "native":
            write_native(path, cpu, count, step, cpu * step_all, blocks, bs, seed=cpu + 1)
        else:
            write_btrecord(path, count, step, cpu * step_all, blocks, bs, seed=cpu + 1)
        paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-D", "--directory", required=True)
    ap.add_argument("--ios", type=int, required=True)
    ap.add_argument("--iops", type=float, default=100000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--disk", type=int, default=256 << 20)
    ap.add_argument("--format", choices=("native", "btrecord"), default="native")
    ap.add_argument("device", nargs="?", default="loop1")
    args = ap.parse_args()
    for path in write(args.directory, args.device, args.ios, args.iops, args.cpus, args.disk, args.format):
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()

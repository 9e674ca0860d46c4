"""Seeds of the fuzz tests: small, valid inputs of every binary kind the engine reads (blktrace traces, native
replay files of both versions, btrecord files), each with the byte ranges (offset, width) of its fields, where the
mutators aim most of their changes."""

from blkfleet.replayfile import compat, native
from helpers import DATA
from helpers.synth import encode, offsets, rec, typical_records

V7_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (24, 4), (28, 4), (32, 4), (36, 4), (40, 4), (44, 2), (46, 2))


def trace_seeds():
    """(bytes, fields) of small traces: the usual record mix, both byte orders, protocol 8, and a slice of a
    real capture (tests/data/randmix)."""
    seeds = []
    recs = typical_records(5)
    fields = [(o + f, w) for o in offsets(recs)[:8] for f, w in V7_FIELDS]
    seeds.append((encode(recs), fields))
    seeds.append((encode(recs, byteorder=">"), fields))
    seeds.append((encode(recs, version=8), []))
    seeds.append((encode([rec(1000 + i * 7, 8 * i, 512 * (i % 9)) for i in range(40)]), fields))
    real = (DATA / "randmix" / "loop1.blktrace.1").read_bytes()[:4800]
    seeds.append((real, [(o + f, w) for o in range(0, 480, 48) for f, w in V7_FIELDS]))
    return seeds


def _native_seed(path, bunches, ops):
    w = native.NativeWriter(str(path), 0x700001, 0, 64)
    t = 1_000_000
    for b in range(bunches):
        w.add_bunch(t, [(2048 + 8 * (b * 8 + k), 4096 * (1 + k % 3), k * 1000, ops[k % len(ops)], k % 32, 42)
                        for k in range(1 + b % 8)])
        t += 3_000_000
    w.close()
    return path.read_bytes()


def _native_v2_seed(path, bunches, ops):
    """A version 2 file: every IO with its timing; parents one and two IOs back (the second an issue parent)."""
    w = native.NativeWriter(str(path), 0x700001, 0, 64, timing=True)
    t, seq = 1_000_000, 0
    for b in range(bunches):
        n = 1 + b % 8
        timings = []
        for _k in range(n):
            parents = [d for d in (1, 2 | 1 << 31) if d & 0xFF <= seq]
            timings.append((seq, 1000 * seq, 5000 if seq % 5 else None, 1 + seq % 4, parents))
            seq += 1
        w.add_bunch(t, [(2048 + 8 * (b * 8 + k), 4096 * (1 + k % 3), k * 1000, ops[k % len(ops)], k % 32, 42)
                        for k in range(n)], timings)
        t += 3_000_000
    w.close()
    return path.read_bytes()


def _native_v2_fields():
    """Version 1's, and the first bunch's (one IO) extension: its timing record, then its parents."""
    head = [(8, 2), (10, 2), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (48, 4), (52, 4), (56, 4)]
    bunch = [(64, 4), (68, 4), (72, 8)]
    packet = [(80 + o, w) for o, w in ((0, 8), (8, 4), (12, 4), (16, 1), (17, 1), (20, 4))]
    timing = [(104 + o, w) for o, w in ((0, 8), (8, 8), (16, 4), (20, 4), (24, 2))]
    second = [(136 + o, w) for o, w in ((0, 4), (4, 4), (8, 8))]  # the second bunch's header
    return head + bunch + packet + timing + second


def _compat_seed(path, bunches):
    w = compat.BtrecordWriter(str(path))
    t = 1_000_000
    for b in range(bunches):
        w.add_bunch(t, [(2048 + 8 * k, 4096, k % 2) for k in range(1 + b % 8)])
        t += 3_000_000
    w.close()
    return path.read_bytes()


def _native_fields():
    head = [(8, 2), (10, 2), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (48, 4), (52, 4), (56, 4)]
    bunch = [(64, 4), (68, 4), (72, 8)]
    packets = [(80 + 24 * k + o, w) for k in range(4) for o, w in ((0, 8), (8, 4), (12, 4), (16, 1), (17, 1),
                                                                  (20, 4))]
    return head + bunch + packets + [(64 + 16 + 24 * 2 + o, w) for o, w in ((0, 4), (8, 8))]


def _compat_fields():
    head = [(0, 8), (8, 8), (16, 8), (24, 8)]
    bunch = [(32, 8), (40, 8)]
    packets = [(48 + 24 * k + o, w) for k in range(4) for o, w in ((0, 8), (8, 8), (16, 4))]
    return head + bunch + packets


FORMATS = {
    "native": (lambda d: [_native_seed(d / "s", n, ops) for n, ops in ((0, [0]), (1, [0]), (3, [0, 1]),
                                                                        (6, [0, 1, 2, 3, 4]))], _native_fields()),
    "btrecord": (lambda d: [_compat_seed(d / "s", n) for n in (0, 1, 2, 5)], _compat_fields()),
    "native-v2": (lambda d: [_native_v2_seed(d / "s", n, ops) for n, ops in ((1, [0]), (3, [0, 1]),
                                                                              (6, [0, 1, 2, 3, 4]))],
                  _native_v2_fields()),
}

"""Fuzz: native and btrecord replay files, through every command that reads them (``replay``, which reads every
stream before it opens a target, and ``bundle create``). 10,000 cases of each format in this process, and a
sample as real processes."""

import random

import pytest

from blkfleet.bundle import pack
from blkfleet.replayfile import compat, native
from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_bytes, scratch, subprocess_cases

DEVICE = "fzdev"  # no /dev/fzdev: a replay that reads its files without error then stops at the target


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
MODES = {"native-v2": (["--mode", "dependency"], ["--mode", "load"])}


@pytest.fixture
def small_engine(monkeypatch):
    """bundle create packs a stand-in engine (the engine is not the input fuzzed here, and building it costs
    more than a case)."""
    monkeypatch.setattr(pack, "engine_bytes", lambda: b"engine stand-in\n")


def make_case(rng, seeds, fields, work, modes=()):
    """Write the case's replay files into ``work``; returns the argv."""
    clear(work)
    (work / f"{DEVICE}.replay.0").write_bytes(mutate_bytes(rng.choice(seeds), rng, fields))
    if rng.random() < 0.2:  # a second CPU file, intact, so that errors are found after a good file too
        (work / f"{DEVICE}.replay.1").write_bytes(rng.choice(seeds))
    if rng.random() < 0.85:
        return ["replay", "-d", work, *rng.choice(([], ["-N"], ["-x", "2"], ["-c", "1"], *modes)), DEVICE]
    return ["bundle", "create", "-d", work, "-o", work / "out.bundle", DEVICE]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_replay_files(fmt, tmp_path, small_engine):
    work = scratch(f"fuzz-{fmt}-")
    try:
        seeds = FORMATS[fmt][0](work)
        fuzz = Fuzz(f"replay-{fmt}", tmp_path / "failures")
        for seed in range(CASES):
            rng = random.Random(f"{fmt}-{seed}")
            argv = make_case(rng, seeds, FORMATS[fmt][1], work, MODES.get(fmt, ()))
            fuzz.case(seed, argv, [work])
        assert fuzz.count == CASES
        assert fuzz.outcomes[0] > CASES // 500 and fuzz.outcomes[2] > CASES // 2, fuzz.outcomes  # both paths
    finally:
        clear(work)
        work.rmdir()


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_replay_files_as_processes(fmt, tmp_path):
    cases = []
    for seed in range(SUBPROCESS_CASES):
        rng = random.Random(f"{fmt}-process-{seed}")
        work = tmp_path / f"c{seed}"
        work.mkdir()
        seeds = FORMATS[fmt][0](work)
        cases.append((f"replay-{fmt} process case {seed}", make_case(rng, seeds, FORMATS[fmt][1], work,
                                                                   MODES.get(fmt, ()))))
    assert subprocess_cases(cases) == []

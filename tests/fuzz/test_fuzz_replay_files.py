"""Fuzz: native and btrecord replay files, through every command that reads them (``replay``, which reads every
stream before it opens a target, and ``bundle create``). 10,000 cases of each format in this process, and a
sample as real processes."""

import random

import pytest

from blkfleet.bundle import pack
from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_bytes, scratch, subprocess_cases
from helpers.fuzz_seeds import FORMATS

DEVICE = "fzdev"  # no /dev/fzdev: a replay that reads its files without error then stops at the target


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

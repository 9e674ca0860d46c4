"""Fuzz: per-IO logs (``replay --io-log``) as ``compare`` and ``report`` read them, from the log of a
two-device, two-iteration replay; 10,000 cases in this process, and a sample as real processes."""

from blkfleet.results.iolog import IOLogWriter
from helpers import DATA
from helpers.fuzz import CASES, mutate_bytes, process_cases, run_cases

ORIGINAL = DATA / "seqlarge"  # a small capture of loop1


def seed_log(path):
    """A log of 3 blocks (iterations 1 and 2, two workers, both devices, every op); its bytes."""
    w = IOLogWriter(str(path), [("loop1", "/dev/loop9"), ("loop2", "/dev/loop8")], 10 ** 9, 1_700_000_000 * 10 ** 9)
    for b in range(3):
        n = 5 + b
        w.write_block(1 + b % 2, b % 2, 1000 * b, [
            [1000 * k for k in range(n)], [10 * k - 20 for k in range(n)], [50_000 + k for k in range(n)],
            [4096 if k else -5 for k in range(n)], [28672 * k for k in range(n)], [4096] * n,
            [k % 2 for k in range(n)], [k % 5 for k in range(n)]])
    w.close()
    return path.read_bytes()


def fields(seed):
    """Header fields (counts, sizes, the device table's lengths) and the first block's header."""
    header_size = int.from_bytes(seed[10:12], "little")
    return [(8, 2), (10, 2), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (48, 4), (64, 2), (66, 2),
            (header_size + 4, 4), (header_size + 8, 4), (header_size + 12, 4), (header_size + 16, 8)]


def make_case(rng, seed, work):
    log = work / "io.log"
    if log.exists():
        log.unlink()
    log.write_bytes(mutate_bytes(seed, rng, fields(seed)))
    return rng.choice((
        ["compare", ORIGINAL, log, "--replay-device", "loop1"],
        ["compare", ORIGINAL, log, "--replay-device", "loop1", "--iteration", "2"],
        ["compare", ORIGINAL, log],
        ["report", "--original", ORIGINAL, "--io-log", log, "-o", work / "r.html", "--db", work / "none.sqlite"],
    ))


def test_fuzz_iologs(tmp_path):
    seed = seed_log(tmp_path / "seed.log")
    outcomes = run_cases("iolog", lambda rng, work: make_case(rng, seed, work), tmp_path / "failures")
    assert outcomes[0] > CASES // 50 and outcomes[2] > CASES // 2, outcomes  # both paths


def test_fuzz_iologs_as_processes(tmp_path):
    seed = seed_log(tmp_path / "seed.log")
    assert process_cases("iolog", lambda rng, work: make_case(rng, seed, work), tmp_path) == []

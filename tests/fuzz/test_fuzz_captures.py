"""Fuzz: damaged captures as ``compare`` and ``report`` read them (an original, a capture of a replay, or both);
10,000 cases in this process, and a sample as real processes."""

from helpers.fuzz import CASES, clear, mutate_bytes, process_cases, run_cases
from helpers.fuzz_seeds import trace_seeds

DEVICE = "fz"


def make_case(rng, seeds, work):
    orig, rep = work / "orig", work / "rep"
    clear(work)
    orig.mkdir()
    rep.mkdir()
    data, fields = rng.choice(seeds)
    (orig / f"{DEVICE}.blktrace.0").write_bytes(mutate_bytes(data, rng, fields) if rng.random() < 0.6 else data)
    other, other_fields = rng.choice(seeds)
    (rep / f"{DEVICE}.blktrace.0").write_bytes(mutate_bytes(other, rng, other_fields))
    if rng.random() < 0.3:  # a second CPU file
        (rep / f"{DEVICE}.blktrace.1").write_bytes(mutate_bytes(data, rng, fields))
    report = ["report", "-o", work / "r.html", "--db", work / "none.sqlite"]
    return rng.choice((
        ["compare", orig, rep],
        ["compare", "-x", "2", "--reads-for-writes", orig, rep],
        [*report, "--original", orig, "--replay-capture", rep],
        [*report, "--original", rep],
    ))


def test_fuzz_captures(tmp_path):
    seeds = trace_seeds()
    outcomes = run_cases("captures", lambda rng, work: make_case(rng, seeds, work), tmp_path / "failures")
    assert outcomes[0] > CASES // 10 and outcomes[2] > CASES // 3, outcomes  # both paths


def test_fuzz_captures_as_processes(tmp_path):
    seeds = trace_seeds()
    assert process_cases("captures", lambda rng, work: make_case(rng, seeds, work), tmp_path) == []


def test_a_cpu_file_whose_clock_steps_back(tmp_path):
    """Found by the cases above: one CPU file whose time stamps go back was taken as already in time order, and
    the report's IOPS plot indexed past its buckets (a traceback)."""
    from helpers.fuzz import run_main
    from helpers.synth import encode, rec

    cap = tmp_path / "cap"
    cap.mkdir()
    times = [5_000_000, 9_000_000, 1_000_000, 7_000_000]
    (cap / f"{DEVICE}.blktrace.0").write_bytes(encode([rec(t, 8 * k)
                                                      for k, t in enumerate(times)]))
    rc, _out, err = run_main(["report", "-o", str(tmp_path / "r.html"), "--db", str(tmp_path / "none.sqlite"),
                              "--original", str(cap), "--replay-capture", str(cap)])
    assert rc == 0, err
    rc, out, err = run_main(["compare", "--json", "-", str(cap), str(cap)])
    assert rc == 0 and '"matched": 4,' in out and '"unmatched_original": 0,' in out, (out, err)

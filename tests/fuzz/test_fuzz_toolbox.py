"""Fuzz: the trace toolbox (``stats``, ``transform``, ``export fio-iolog`` and ``export fio-job``) on damaged
replay files (native versions 1 and 2, btrecord's) and damaged captures. 10,000 cases in this process, and a
sample as real processes."""

from helpers.fuzz import CASES, clear, mutate_bytes, process_cases, run_cases
from helpers.fuzz_seeds import FORMATS, trace_seeds

DEVICE = "fz"


def seeds(work):
    """[(bytes, fields, file name)] of every replay format and of the capture seeds."""
    out = []
    for make, fields in FORMATS.values():
        out += [(data, fields, f"{DEVICE}.replay.0") for data in make(work)]
    return out + [(data, fields, f"{DEVICE}.blktrace.0") for data, fields in trace_seeds()]


def make_case(rng, all_seeds, work):
    src, out = work / "in", work / "out"
    clear(work)
    src.mkdir()
    data, fields, name = rng.choice(all_seeds)
    (src / name).write_bytes(mutate_bytes(data, rng, fields))
    return rng.choice((
        ["stats", src],
        ["stats", "--phases", "3", "--json", work / "s.json", src],
        ["transform", "-q", "-D", out, src],
        ["transform", "-q", "-D", out, "--wrap", "1M", "--align", "4096", "--time-scale", "2", src],
        ["transform", "-q", "-D", out, "--from", "1ms", "--skip", "discard,flush", "--shift", "4096", "--scale",
         "0.5", "--rename", f"{DEVICE}=other", src],
        ["export", "fio-iolog", "-o", work / "x.iolog", src],
        ["export", "fio-job", "-o", work / "x.fio", "--phases", "2", src],
    ))


def test_fuzz_toolbox(tmp_path):
    all_seeds = seeds(tmp_path)
    outcomes = run_cases("toolbox", lambda rng, work: make_case(rng, all_seeds, work), tmp_path / "failures")
    assert outcomes[0] > CASES // 10 and outcomes[2] > CASES // 3, outcomes  # both paths


def test_fuzz_toolbox_as_processes(tmp_path):
    all_seeds = seeds(tmp_path)
    assert process_cases("toolbox", lambda rng, work: make_case(rng, all_seeds, work), tmp_path) == []


def test_values_beyond_64_bits_are_one_error(tmp_path):
    """Found by the cases above: a completion stamped 2^64 - 5 ns (stats), and times pushed past 2^63 ns by
    ``--time-scale`` (transform), were tracebacks."""
    from blkfleet.replayfile import native
    from blkfleet.trace.actions import A_COMPLETE, A_QUEUE, C_READ
    from helpers.fuzz import run_main
    from helpers.synth import encode, rec

    cap = tmp_path / "cap"
    cap.mkdir()
    (cap / f"{DEVICE}.blktrace.0").write_bytes(encode([rec(1000, 8, 4096, A_QUEUE | C_READ),
                                                      rec((1 << 64) - 5, 8, 4096, A_COMPLETE | C_READ)]))
    rc, _out, err = run_main(["stats", str(cap)])
    assert rc == 2 and err.count("\n") == 1 and "completion's time stamp or sector is 2^63 or more" in err
    rep = tmp_path / "rep"
    rep.mkdir()
    w = native.NativeWriter(str(rep / f"{DEVICE}.replay.0"), 0x700001, 0, 64)
    w.add_bunch(0, [(8, 4096, 0, 0, 0, 1)])
    w.add_bunch(1 << 62, [(16, 4096, 0, 0, 0, 1)])
    w.close()
    rc, _out, err = run_main(["transform", "-q", "-D", str(tmp_path / "out"), "--time-scale", "4", str(rep)])
    assert rc == 2 and err.count("\n") == 1 and "a time stamp beyond the 64-bit range" in err

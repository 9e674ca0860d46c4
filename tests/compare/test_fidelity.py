"""``blkfleet compare``: matching, the fidelity figures on synthetic captures with known answers, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.compare.fidelity import compare_dirs, match
from blkfleet.stats import mape, percentile, percentiles
from blkfleet.trace import TraceRecord, TraceWriter

Q_READ = 0x00190001
Q_WRITE = 0x001A0001
Q_FLUSH = 0x00140001  # FLUSH|QUEUE, no data
Q_DISCARD = 0x20120001  # DISCARD|WRITE|QUEUE
C_READ = 0x01990008  # a completion: not a Q event
MS = 1_000_000  # ns
US = 1_000
ENGINE = Path(__file__).resolve().parents[2] / "engine"


def write_capture(directory, ios, device="loop4", cpus=1):
    """Write ``ios`` [(time_ns, sector, nbytes, action)] as DEV.blktrace.CPU files, IO k on CPU k % cpus."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    writers = [TraceWriter(directory / f"{device}.blktrace.{cpu}") for cpu in range(cpus)]
    try:
        for k, (t, sector, nbytes, action) in enumerate(ios):
            cpu = k % cpus
            writers[cpu].write(TraceRecord(t, sector, nbytes, action, 4242, 0x700004, cpu))
    finally:
        for w in writers:
            w.close()
    return str(directory)


def steady(n, step=MS, start=0, action=Q_READ):
    """n 4 KiB IOs at distinct sectors, ``step`` ns apart."""
    return [(start + k * step, 8 * k, 4096, action) for k in range(n)]


def shifted(ios, shift=0, delays=None, scale=1):
    delays = delays or [0] * len(ios)
    return [(t // scale + shift + d, s, n, a) for (t, s, n, a), d in zip(ios, delays)]


def run_json(capsys, *args):
    assert main(["compare", *map(str, args), "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)["result"]


# --- stats ---------------------------------------------------------------------------------------------------


def test_percentiles_linear_and_nearest_rank():
    values = [15, 20, 35, 40, 50]
    assert percentiles(values, (0, 25, 50, 100)) == [15, 20, 35, 50]
    assert percentile(values, 40) == pytest.approx(29.0)  # h = 1.6: 20 + 0.6 * 15
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentiles(values, (5, 30, 40, 50, 100), method="nearest") == [15, 20, 20, 35, 50]
    assert percentile([3, 1, 2], 0, method="nearest") == 1
    assert percentile([], 50) is None
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile(values, 101)
    with pytest.raises(ValueError):
        percentile(values, 50, method="bogus")


def test_mape_skips_zero_actuals():
    assert mape([10, 10, 0, 20], [10, 5, 3, 30]) == pytest.approx((0 + 50 + 50) / 3)
    assert mape([0, 0], [1, 2]) is None


# --- matching ------------------------------------------------------------------------------------------------


def test_match_nth_with_nth_per_key():
    orig = ["a", "b", "a", "c", "a", None]
    replay = ["a", "x", "a", "b", "b", None, "a", "a"]
    # a: originals 0, 2, 4 <- replays 0, 2, 6 (7 left over); b: 1 <- 3 (4 left over); c, None, x: none
    assert match(orig, replay) == [0, 3, 2, None, 6, None]


def test_match_empty_and_disjoint():
    assert match([], [1, 2]) == []
    assert match([1, 2], []) == [None, None]
    assert match([1, 2], [3, 4]) == [None, None]


# --- figures -------------------------------------------------------------------------------------------------


def test_identical_replay_shifted_in_time_has_zero_error(tmp_path, capsys):
    ios = steady(500, step=700 * US, start=5 * MS)  # 500 IOs over ~350 ms: 4 buckets
    orig = write_capture(tmp_path / "orig", ios, cpus=2)
    rep = write_capture(tmp_path / "rep", shifted(ios, shift=123_456_789), cpus=3)
    doc = run_json(capsys, orig, rep)
    assert doc["matched"] == 500
    assert doc["unmatched_original"] == doc["unmatched_replay"] == doc["expected_missing"] == 0
    assert doc["issue_time_error_us"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    assert doc["inter_arrival_error_us"] == {"p50": 0.0, "p99": 0.0}
    assert doc["iops"] == {"bucket_us": 100000.0, "buckets": 4, "mape_pct": 0.0}
    assert doc["span_ratio"] == 1.0
    assert doc["original"]["span_us"] == doc["replay"]["span_us"] == 499 * 700.0


def test_injected_delays_give_exact_percentiles(tmp_path):
    ios = steady(11, step=MS, start=MS)
    delays_us = [0, 30, 10, 50, 20, 0, 40, 100, 60, 70, 80]
    orig = write_capture(tmp_path / "orig", ios)
    rep = write_capture(tmp_path / "rep", shifted(ios, shift=7 * MS, delays=[d * US for d in delays_us]))
    r = compare_dirs(orig, rep)
    # |errors| sorted: 0 0 10 20 30 40 50 60 70 80 100 (n = 11, linear: h = 10 p)
    assert r["issue_time_error_us"] == {"p50": 40.0, "p90": 80.0, "p99": pytest.approx(98.0), "max": 100.0}
    # gap errors |d_k - d_k-1|: 30 20 40 30 20 40 60 40 10 10 -> sorted 10 10 20 20 30 30 40 40 40 60 (h = 9 p)
    assert r["inter_arrival_error_us"] == {"p50": 30.0, "p99": pytest.approx(58.2)}
    assert r["span_ratio"] == pytest.approx((10_000 + 80) / 10_000)
    assert r["replay"]["span_us"] == 10_080.0
    assert r["iops"]["mape_pct"] == 0.0  # one 100 ms bucket, 11 IOs each


def test_origin_is_each_captures_first_matched_io(tmp_path):
    ios = steady(5, step=MS)
    orig = write_capture(tmp_path / "orig", [(0, 999_999, 512, Q_READ)] + shifted(ios, shift=MS))
    rep = write_capture(tmp_path / "rep", shifted(ios, shift=50 * MS, delays=[200 * US, 200 * US, 0, 0, 0]))
    r = compare_dirs(orig, rep)
    assert (r["matched"], r["unmatched_original"], r["unmatched_replay"]) == (5, 1, 0)
    # origins: orig's IO at 1 ms (not the unmatched one at 0), replay's first (late by 200 us) -> errors 0 0 200 200 200
    assert r["issue_time_error_us"]["p50"] == 200.0
    assert r["issue_time_error_us"]["max"] == 200.0
    assert r["span_ratio"] == pytest.approx(3.8 / 4)


def test_acc_factor_two_with_halved_times_has_zero_error(tmp_path, capsys):
    ios = steady(300, step=2 * MS, start=10 * MS)  # 598 ms original span: 299 ms replayed, 3 buckets
    orig = write_capture(tmp_path / "orig", ios)
    rep = write_capture(tmp_path / "rep", shifted(ios, shift=MS, scale=2))
    doc = run_json(capsys, orig, rep, "-x", "2")
    assert doc["acc_factor"] == 2.0
    assert doc["issue_time_error_us"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    assert doc["inter_arrival_error_us"] == {"p50": 0.0, "p99": 0.0}
    assert doc["span_ratio"] == 1.0
    assert doc["iops"]["buckets"] == 3
    assert doc["iops"]["mape_pct"] == 0.0
    # the same replay judged at acc 1 ran twice too fast
    assert compare_dirs(orig, rep)["span_ratio"] == 0.5


def test_iops_mape_over_buckets(tmp_path):
    # 10 IOs in each of 3 buckets (last IO at 245 ms); the replay drops 5 of the middle bucket
    ios = [(b * 100 * MS + k * 5 * MS, 8 * (10 * b + k), 4096, Q_READ) for b in range(3) for k in range(10)]
    dropped = {(1, k) for k in range(5)}
    rep_ios = [io for io in ios if (io[0] // (100 * MS), io[0] % (100 * MS) // (5 * MS)) not in dropped]
    r = compare_dirs(write_capture(tmp_path / "orig", ios), write_capture(tmp_path / "rep", shifted(rep_ios, MS)))
    assert (r["matched"], r["unmatched_original"], r["unmatched_replay"]) == (25, 5, 0)
    assert r["iops"]["buckets"] == 3
    assert r["iops"]["mape_pct"] == pytest.approx(50 / 3)


def test_unmatched_and_repeated_keys_counted(tmp_path):
    same = (8, 4096, Q_READ)  # a key repeated three times in the original, twice in the replay
    orig_ios = [(0, *same), (MS, 16, 4096, Q_READ), (2 * MS, *same), (3 * MS, 24, 8192, Q_WRITE), (4 * MS, *same)]
    rep_ios = [
        (0, *same), (MS, 16, 4096, Q_WRITE),  # wrong op: unmatched on both sides
        (2 * MS, *same), (3 * MS, 24, 4096, Q_WRITE),  # wrong size
        (3 * MS + 1, 4096, 4096, Q_READ),  # not in the original
    ]
    r = compare_dirs(write_capture(tmp_path / "orig", orig_ios), write_capture(tmp_path / "rep", rep_ios))
    assert (r["original"]["ios"], r["replay"]["ios"]) == (5, 5)
    assert (r["matched"], r["unmatched_original"], r["unmatched_replay"]) == (2, 3, 3)
    assert r["original"]["ios_by_op"] == {"read": 4, "write": 1, "discard": 0, "flush": 0, "write_zeroes": 0}
    assert r["issue_time_error_us"]["max"] == 0.0  # the 1st and 2nd repeats matched 1st and 2nd


def test_reads_for_writes(tmp_path, capsys):
    orig_ios = [(0, 8, 4096, Q_WRITE), (MS, 16, 4096, Q_READ), (2 * MS, 0, 0, Q_FLUSH),
                (3 * MS, 64, 65536, Q_DISCARD), (4 * MS, 24, 4096, Q_WRITE)]
    rep_ios = [(t, s, n, Q_READ) for t, s, n, a in orig_ios if a in (Q_READ, Q_WRITE)]
    orig = write_capture(tmp_path / "orig", orig_ios)
    rep = write_capture(tmp_path / "rep", shifted(rep_ios, MS))
    plain = compare_dirs(orig, rep)
    assert (plain["matched"], plain["unmatched_original"], plain["unmatched_replay"]) == (1, 4, 2)
    doc = run_json(capsys, orig, rep, "--reads-for-writes")
    assert doc["reads_for_writes"] is True
    assert (doc["matched"], doc["unmatched_original"], doc["unmatched_replay"], doc["expected_missing"]) == (
        3, 0, 0, 2)
    assert doc["issue_time_error_us"]["max"] == 0.0
    assert doc["iops"]["mape_pct"] == 0.0  # the expected-missing flush and discard are not counted
    assert doc["original"]["ios_by_op"]["flush"] == doc["original"]["ios_by_op"]["discard"] == 1


def test_per_cpu_files_merged_by_time(tmp_path):
    ios = steady(40, step=250 * US)
    rep = write_capture(tmp_path / "rep", shifted(ios, MS, delays=[(k % 3) * US for k in range(40)]), cpus=1)
    one = compare_dirs(write_capture(tmp_path / "o1", ios, cpus=1), rep)
    four = compare_dirs(write_capture(tmp_path / "o4", ios, cpus=4), rep)
    for r in (one, four):
        r["original"].pop("directory")
    assert one == four
    assert one["issue_time_error_us"]["max"] == 2.0


def test_no_matches_gives_counts_and_no_figures(tmp_path, capsys):
    orig = write_capture(tmp_path / "orig", steady(3))
    rep = write_capture(tmp_path / "rep", steady(3, action=Q_WRITE))
    doc = run_json(capsys, orig, rep)
    assert (doc["matched"], doc["unmatched_original"], doc["unmatched_replay"]) == (0, 3, 3)
    assert doc["issue_time_error_us"] is None and doc["inter_arrival_error_us"] is None
    assert doc["span_ratio"] is None and doc["iops"]["mape_pct"] is None
    assert main(["compare", orig, rep]) == 0
    assert "no matched IOs" in capsys.readouterr().out


# --- CLI -----------------------------------------------------------------------------------------------------


def test_json_structure(tmp_path, capsys):
    ios = steady(20)
    orig = write_capture(tmp_path / "orig", ios, device="sdb")
    rep = write_capture(tmp_path / "rep", shifted(ios, MS, delays=[k * US for k in range(20)]), device="loop0")
    out = tmp_path / "fidelity.json"
    assert main(["compare", orig, rep, "--json", str(out)]) == 0
    assert "issue-time error" in capsys.readouterr().out  # the table still goes to stdout
    doc = json.loads(out.read_text())
    assert set(doc) == {
        "original", "replay", "acc_factor", "reads_for_writes", "matched", "unmatched_original",
        "unmatched_replay", "expected_missing", "issue_time_error_us", "issue_time_offset_us",
        "issue_time_error_around_offset_us", "inter_arrival_error_us", "iops",
        "span_ratio", "percentile_method", "replay_start_monotonic_ns",
    }
    assert doc["replay_start_monotonic_ns"] is None
    for side, path, dev in (("original", orig, "sdb"), ("replay", rep, "loop0")):
        assert doc[side] == {"directory": path, "device": dev, "ios": 20, "span_us": doc[side]["span_us"],
                             "left_out_before_start": 0,
                             "ios_by_op": {"read": 20, "write": 0, "discard": 0, "flush": 0, "write_zeroes": 0}}
        assert isinstance(doc[side]["span_us"], float)
    assert set(doc["issue_time_error_us"]) == {"p50", "p90", "p99", "max"}
    assert set(doc["inter_arrival_error_us"]) == {"p50", "p99"}
    assert set(doc["iops"]) == {"bucket_us", "buckets", "mape_pct"}
    assert doc["percentile_method"] == "linear"
    for key in ("matched", "unmatched_original", "unmatched_replay", "expected_missing"):
        assert type(doc[key]) is int
    assert all(type(v) is float for v in doc["issue_time_error_us"].values())
    assert doc["issue_time_error_us"]["max"] == 19.0


def test_table_output(tmp_path, capsys):
    ios = steady(10)
    assert main(["compare", write_capture(tmp_path / "o", ios), write_capture(tmp_path / "r", ios)]) == 0
    out = capsys.readouterr().out
    for text in ("matched              10", "unmatched original   0", "issue-time error us", "span ratio", "MAPE"):
        assert text in out


def test_device_selection(tmp_path, capsys):
    ios = steady(5)
    orig = write_capture(tmp_path / "orig", ios, device="sda")
    write_capture(tmp_path / "orig", steady(5, action=Q_WRITE), device="sdb")
    rep = write_capture(tmp_path / "rep", ios, device="loop1")
    assert main(["compare", orig, rep]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "several devices (sda, sdb)" in err and "--device" in err
    assert run_json(capsys, orig, rep, "--device", "sda")["matched"] == 5
    assert run_json(capsys, orig, rep, "--device", "sdb", "--replay-device", "loop1")["matched"] == 0
    assert main(["compare", orig, rep, "--device", "sda", "--replay-device", "nvme0n1"]) == 2
    assert "no nvme0n1.blktrace.N files" in capsys.readouterr().err


def _error_cases(tmp_path):
    good = write_capture(tmp_path / "good", steady(3))
    empty = tmp_path / "empty"
    empty.mkdir()
    noq = write_capture(tmp_path / "noq", [(0, 8, 4096, C_READ)])
    zero = tmp_path / "zero"
    zero.mkdir()
    (zero / "loop4.blktrace.0").write_bytes(b"")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "loop4.blktrace.0").write_bytes(b"this is not a blktrace file at all, no" * 4)
    cut = tmp_path / "cut"
    cut.mkdir()
    data = (Path(good) / "loop4.blktrace.0").read_bytes()
    (cut / "loop4.blktrace.0").write_bytes(data[:-10])
    return {
        "missing": ([str(tmp_path / "nope"), good], "cannot read directory"),
        "empty": ([str(empty), good], "no DEV.blktrace.N files"),
        "no-q": ([good, noq], "no queued IOs"),
        "empty-file": ([zero, good], "no queued IOs"),
        "bad-magic": ([good, bad], "bad magic"),
        "truncated": ([cut, good], "truncated"),
        "acc-zero": ([good, good, "-x", "0"], "argument -x/--acc-factor: must be a number > 0"),
        "acc-negative": ([good, good, "--acc-factor=-2"], "must be a number > 0"),
        "acc-text": ([good, good, "-x", "fast"], "not a number"),
        "acc-inf": ([good, good, "-x", "inf"], "not a finite number"),
        "no-args": ([], "the following arguments are required"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "empty", "no-q", "empty-file", "bad-magic", "truncated", "acc-zero", "acc-negative",
             "acc-text", "acc-inf", "no-args"],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, case):
    args, text = _error_cases(tmp_path)[case]
    assert main(["compare", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("blkfleet: ") and captured.err.count("\n") == 1
    assert text in captured.err


def test_real_process_exit_codes(tmp_path):
    ios = steady(4)
    orig = write_capture(tmp_path / "orig", ios)
    env = dict(os.environ, PYTHONPATH=str(ENGINE))
    ok = subprocess.run([sys.executable, "-m", "blkfleet", "compare", orig, orig, "--json", "-"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["result"]["matched"] == 4
    bad = subprocess.run([sys.executable, "-m", "blkfleet", "compare", orig, str(tmp_path / "none")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stdout == "" and bad.stderr.count("\n") == 1


def test_a_constant_shift_is_told_apart_from_jitter(tmp_path):
    """Every replayed IO but the first 300 us early relative to it (as when only the first IO is slow): the
    issue-time error is 300 us almost throughout, the median offset says -300 us, nothing is left around it."""
    ios = steady(100, step=MS, start=MS)
    orig = write_capture(tmp_path / "orig", ios)
    rep = write_capture(tmp_path / "rep", shifted(ios, shift=5 * MS, delays=[0] + [-300 * US] * 99))
    r = compare_dirs(orig, rep)
    assert r["issue_time_error_us"]["p50"] == 300.0
    assert r["issue_time_offset_us"] == -300.0
    assert r["issue_time_error_around_offset_us"]["p50"] == 0.0


def test_a_wild_time_stamp_costs_no_memory(tmp_path):
    """One IO 3 years after the others (a damaged or foreign time stamp): compare and report still finish at once
    in bounded memory (per-100-ms buckets of the whole span would be 10^9 of them)."""
    ios = [(k * MS, 8 * k, 4096, Q_READ) for k in range(1000)] + [(10**17, 8, 4096, Q_READ)]
    orig, rep = write_capture(tmp_path / "o", ios), write_capture(tmp_path / "r", ios)
    env = {**os.environ, "PYTHONPATH": str(ENGINE)}
    limit = "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); " \
            "sys.argv = ['blkfleet'] + sys.argv[1:]; runpy.run_module('blkfleet', run_name='__main__')"
    for args in (["compare", orig, rep, "--json", str(tmp_path / "c.json")],
                 ["report", "--original", orig, "--replay-capture", rep, "-o", str(tmp_path / "r.html")]):
        proc = subprocess.run([sys.executable, "-c", limit, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["matched"] == 1001 and doc["iops"]["mape_pct"] == 0.0

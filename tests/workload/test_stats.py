"""``blkfleet stats`` against blkparse and btt on real captures (tests/data: fio on a loop device, traced with every
event), against slow obvious references on synthetic streams, and in memory that does not grow with the trace."""

import contextlib
import io
import json
import random
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.replayfile.ops import FLUSH, READ, WRITE
from blkfleet.streams import chunks as ch
from blkfleet.streams.nativeout import NativeFile
from blkfleet.workload.extents import HotExtents, WorkingSet
from blkfleet.workload.figures import DeviceFigures, Seeks

DATA = Path(__file__).resolve().parents[1] / "data"
ENGINE = Path(__file__).resolve().parents[2] / "engine"


def stats(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["stats", *map(str, argv), "--json", "-"]) == 0
    return out.getvalue()


def stats_doc(tmp_path, *argv):
    assert main(["stats", *map(str, argv), "--json", str(tmp_path / "s.json")]) == 0
    return json.loads((tmp_path / "s.json").read_text())


def need(*tools):
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (Debian blktrace)")


def blkparse_totals(directory, device):
    """(reads queued, their KiB, writes queued, their KiB) from blkparse's summary."""
    text = subprocess.run(["blkparse", "-i", device, "-D", str(directory)], capture_output=True, text=True,
                          check=True).stdout
    at = text.find("Total (")  # only when events came from more than one CPU; else the one CPU's section
    section = text[max(at, 0):]
    m = re.search(r"Reads Queued:\s+(\d+),\s+(\d+)KiB\s+Writes Queued:\s+(\d+),\s+(\d+)KiB", section)
    return tuple(map(int, m.groups()))


def btt_figures(directory, device, tmp_path):
    """btt's Q2C (min, avg, max, N in seconds, or None) and Q2Q seek line (NSEEKS, MEAN, MODE, its count)."""
    dump = tmp_path / f"{directory.name}.bin"
    subprocess.run(["blkparse", "-i", device, "-D", str(directory), "-d", str(dump), "-O"], capture_output=True,
                   check=True)
    subprocess.run(["btt", "-i", str(dump), "-o", str(tmp_path / directory.name)], capture_output=True, check=True,
                   cwd=tmp_path)  # btt writes its per-device .dat files into the current directory
    text = (tmp_path / f"{directory.name}.avg").read_text()
    q2c = re.search(r"^Q2C\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)", text, re.M)
    seek = re.search(r"Device Q2Q Seek Information.*?\|\s+(\d+)\s+(\S+)\s+\S+\s+\|\s+(\d+)\((\d+)\)", text, re.S)
    return (tuple(map(float, q2c.groups())) if q2c else None), (int(seek.group(1)), float(seek.group(2)),
                                                                   int(seek.group(3)), int(seek.group(4)))


def check_against_blkparse_and_btt(doc, directory, device, tmp_path, q2c=True):
    d = doc["devices"][device]
    ops = d["ops"]
    reads, read_kib, writes, write_kib = blkparse_totals(directory, device)
    assert ops["read"]["ios"] == reads and ops["read"]["bytes"] >> 10 == read_kib
    assert d["ios"] == reads + writes and (d["bytes"] - ops["read"]["bytes"]) >> 10 == write_kib
    btt_q2c, (nseeks, mean, mode, mode_count) = btt_figures(directory, device, tmp_path)
    seek = d["all"]["seek"]
    assert seek["ios"] == nseeks and round(seek["mean_sectors"], 1) == mean and seek["mode_sectors"] == mode
    if mode == 0:
        assert seek["sequential_fraction"] == round(mode_count / nseeks, 6)
    if q2c:
        low, avg, high, n = btt_q2c
        c = d["completions"]
        assert c["matched"] == n and c["q2c_us"]["mean"] == pytest.approx(avg * 1e6, abs=0.001)
        assert c["q2c_us"]["max"] == pytest.approx(high * 1e6, abs=0.001)
        assert c["unmatched_queued"] == c["unmatched_completions"] == 0


@pytest.mark.parametrize("name", ["randmix", "multicpu"])
def test_counts_bytes_q2c_and_seeks_match_btt(tmp_path, name):
    """Captures without split bios: every figure btt gives is the same (Q2C to the nanosecond)."""
    need("blkparse", "btt")
    doc = stats_doc(tmp_path, DATA / name)
    check_against_blkparse_and_btt(doc, DATA / name, "loop1", tmp_path)


@pytest.mark.parametrize("name", ["fs", "seqlarge"])
def test_split_bios_counts_and_seeks_match_btt(tmp_path, name):
    """An ext4 workload (discards, flushes, metadata) and 1 MiB IOs split in two: counts, bytes and seeks as
    blkparse and btt; Q2C ends at a split bio's last part (btt gives none for seqlarge, and for fs attributes a
    later completion to a split 1 MiB write: 16.7 ms where its two parts completed 0.69 ms after its Q)."""
    need("blkparse", "btt")
    doc = stats_doc(tmp_path, DATA / name)
    check_against_blkparse_and_btt(doc, DATA / name, "loop1", tmp_path, q2c=False)
    c = doc["devices"]["loop1"]["completions"]
    assert c["unmatched_queued"] == c["unmatched_completions"] == 0
    assert c["matched"] == sum(f["ios"] for op, f in doc["devices"]["loop1"]["ops"].items() if op != "flush")
    if name == "seqlarge":
        assert doc["devices"]["loop1"]["all"]["seek"]["sequential_fraction"] == round(95 / 96, 6)


def test_protocol_document_and_table():
    text = stats(DATA / "randmix")
    doc = json.loads(text)
    assert doc["command"] == "stats" and doc["result"]["devices"]["loop1"]["ios"] == 2000
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["stats", str(DATA / "randmix")]) == 0
    assert out.getvalue().startswith("loop1: 2,000 IOs, 8,192,000 bytes over 0.036819 s")
    assert "completions: Q2C mean 58.037 us" in out.getvalue()


def btt_seek(prev, start, end):
    """btt's seek_dist, as written in btt/seek.c (the reference)."""
    last_start, last_end = prev
    if (last_start <= start <= last_end) or (last_start <= end <= last_end):
        return 0
    if start > last_end:
        return start - last_end
    return start - last_start


def test_seeks_equal_btt_rule_on_random_streams():
    rng = random.Random(7)
    for _ in range(200):
        seeks = Seeks(modes=True)
        prev, expect = (0, 0), []
        sectors, sizes = [], []
        for _ in range(rng.randrange(1, 300)):
            s = rng.choice((prev[1], prev[0], rng.randrange(1 << 20), max(prev[0] - rng.randrange(64), 0)))
            n = rng.choice((512, 4096, 65536, 1 << 20))
            sectors.append(s)
            sizes.append(n)
            expect.append(abs(btt_seek(prev, s, s + n // 512)))
            prev = (s, s + n // 512)
        cut = rng.randrange(len(sectors) + 1)  # fed in two chunks: the state crosses them
        seeks.add(sectors[:cut], sizes[:cut])
        seeks.add(sectors[cut:], sizes[cut:])
        f = seeks.figures()
        assert f["ios"] == len(expect) and seeks.total == sum(expect)
        assert f["sequential_fraction"] == round(expect.count(0) / len(expect), 6)
        top = max(expect.count(v) for v in set(expect))
        assert f["mode_sectors"] == min(v for v in set(expect) if expect.count(v) == top)


def test_working_set_and_hot_extents_against_sets():
    rng = random.Random(3)
    ws, hot = WorkingSet(), HotExtents()
    touched, per_extent = set(), {}
    for _ in range(50):
        sectors = [rng.randrange(1 << 24) for _ in range(200)]
        sizes = [rng.choice((512, 4096, 8192, 65536, 3 << 20)) for _ in sectors]
        ws.add(sectors, sizes)
        hot.add(sectors)
        for s, n in zip(sectors, sizes):
            touched.update(range(s * 512 // 4096, (s * 512 + n - 1) // 4096 + 1))
            per_extent[s * 512 >> 20] = per_extent.get(s * 512 >> 20, 0) + 1
    assert ws.figures() == {"bytes": len(touched) * 4096, "unit_bytes": 4096, "units": len(touched)}
    counts = sorted(per_extent.values(), reverse=True)
    f = hot.figures()
    assert f["touched"] == len(counts) and f["top_10pct"] == round(sum(counts[:-(-len(counts) // 10)]) / 10000, 6)


def test_working_set_unit_doubles_past_its_memory(monkeypatch):
    from blkfleet.workload import extents

    monkeypatch.setattr(extents, "MAX_MAP", 4 * extents.PAGE_UNITS)  # 4 pages
    ws = WorkingSet()
    units = [k << 16 for k in range(8)] + [(k << 16) + 1 for k in range(8)]  # 8 pages; units 2j, 2j+1 pairs
    ws.add([u * 8 for u in units], [4096] * len(units))
    f = ws.figures()
    assert f["unit_bytes"] == 8192 and f["units"] == 8  # each pair merged: exact at 8 KiB
    assert len(ws.pages) <= 4


def synthetic(path, ios, seed=1):
    """A native replay file of ``ios`` random 4 KiB reads and writes, 10 µs apart."""
    rng = random.Random(seed)
    out = NativeFile(path)
    for start in range(0, ios, 65536):
        n = min(65536, ios - start)
        out.add(ch.make(range(start * 10_000, (start + n) * 10_000, 10_000),
                        [rng.randrange(1 << 30) * 8 for _ in range(n)], [4096] * n,
                        bytes(rng.choice((READ, WRITE)) for _ in range(n))))
    out.close()


def test_device_figures_of_a_stream():
    f = DeviceFigures()
    f.add(ch.make([0, 10, 20, 1_000_000], [0, 8, 16, 0], [4096, 4096, 4096, 0], [READ, READ, WRITE, FLUSH]))
    doc = f.figures(phases=2)
    assert doc["ios"] == 4 and doc["bytes"] == 12288 and doc["span_ns"] == 1_000_000
    assert doc["all"]["seek"]["ios"] == 3 and doc["all"]["seek"]["sequential_fraction"] == 1.0
    assert doc["ops"]["read"]["inter_arrival_us"]["p50"] == 0.01
    assert [p["ios"] for p in doc["phases"]] == [{"read": 2, "write": 1}, {"flush": 1}]
    assert doc["all"]["size"]["exact"] == [{"bytes": 0, "ios": 1}, {"bytes": 4096, "ios": 3}]


@pytest.mark.slow
def test_memory_does_not_grow_with_the_trace(tmp_path):
    """Peak memory of stats on 250 k and on 2 M IOs: within 8 MiB of each other."""
    peaks = []
    for ios in (250_000, 2_000_000):
        d = tmp_path / str(ios)
        d.mkdir()
        synthetic(d / "dev.replay.0", ios)
        code = ("import resource, sys; from blkfleet.cli import main; rc = main(['stats', sys.argv[1], '--json', "
                "sys.argv[2]]); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        run = subprocess.run([sys.executable, "-c", code, str(d), str(d / "s.json")], capture_output=True, text=True,
                             env={"PYTHONPATH": str(ENGINE)}, timeout=600)
        assert run.returncode == 0, run.stderr
        peaks.append(int(run.stdout.strip().splitlines()[-1]))
        assert json.loads((d / "s.json").read_text())["devices"]["dev"]["ios"] == ios
    assert peaks[1] - peaks[0] < 8 << 10, peaks  # KiB
    assert resource.RUSAGE_SELF is not None


@pytest.mark.root
def test_a_fresh_capture_with_completions_matches_btt(tmp_path, loopdev, tracer):
    """fio on a loop device, every event traced (the kernel's blk tracer, as blktrace records): 64 KiB sequential
    writes and 4 KiB random reads. Counts, bytes, Q2C (to the nanosecond), seeks and the sequential fraction are
    btt's and blkparse's."""
    need("blkparse", "btt", "fio")
    from helpers.tracing import traced

    dev = loopdev(128 << 20)
    with traced([dev], tmp_path / "cap", tracer, act_mask="all"):
        subprocess.run(["fio", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--name=seq", "--rw=write",
                        "--bs=64k", "--iodepth=1", "--size=32M", "--number_ios=400", "--name=rand",
                        "--rw=randread", "--bs=4k", "--iodepth=4", "--offset=64M", "--size=64M", "--number_ios=200"],
                       capture_output=True, check=True, timeout=300)
    name = dev.rsplit("/", 1)[-1]
    doc = stats_doc(tmp_path, tmp_path / "cap")
    d = doc["devices"][name]
    assert d["ops"]["write"]["ios"] == 400 and d["ops"]["read"]["ios"] == 200 and d["completions"]["matched"] == 600
    assert d["ops"]["write"]["seek"]["sequential_fraction"] >= 0.99  # its own stream: one seek, to its start
    check_against_blkparse_and_btt(doc, tmp_path / "cap", name, tmp_path)

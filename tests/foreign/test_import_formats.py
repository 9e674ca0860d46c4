"""``blkfleet import``: every format on sample files written from its published description (tests/data/foreign;
docs/formats.md names the sources), the IOs checked one by one against values worked out by hand from those
descriptions; compressed and archived inputs; renames, selection, the tolerance; bad input as one line."""

import bz2
import contextlib
import gzip
import io
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.replayfile import iter_ios, open_replay
from blkfleet.replayfile.ops import DISCARD, F_AHEAD, F_FUA, F_META, F_PREFLUSH, F_SYNC, FLUSH, READ, WRITE

DATA = Path(__file__).resolve().parents[1] / "data" / "foreign"
MS = 1_000_000


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def imported(tmp_path, fmt, *inputs, options=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    rc, stdout, err = run("import", fmt, *inputs, "-D", out, "--json", tmp_path / "s.json", *options)
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    ios = {}
    for f in summary["files"]:
        with open_replay(f["output"]) as r:
            ios[f["device"]] = list(iter_ios(r))
            assert r.kind == "native" and f["ios"] == len(ios[f["device"]])
    return ios, summary, err


def test_msr_cambridge(tmp_path):
    """Filetime (100 ns ticks) from the first IO, offsets and sizes in bytes, one device per host and disk."""
    ios, summary, _ = imported(tmp_path, "msr", DATA / "msr_src1_2.csv")
    assert ios == {
        "src1_2": [(0, 8, 4096, READ, 0), (25_000, 2_097_152, 65536, WRITE, 0), (1 * MS, 16, 512, READ, 0),
                   (1000 * MS, 32, 16384, READ, 0)],
        "src1_1": [(1 * MS, 0, 4096, WRITE, 0)],
    }
    assert summary["time_base_s"] == "12816637200"  # the first timestamp, in seconds since 1601
    assert summary["inputs"] == [{"name": str(DATA / "msr_src1_2.csv"), "lines": 6, "ios": 5}]
    origin = json.loads((tmp_path / "out" / "origin.json").read_text())
    assert origin["command"] == "import" and origin["options"]["format"] == "msr"
    assert origin["inputs"] == [{"name": "msr_src1_2.csv", "bytes": (DATA / "msr_src1_2.csv").stat().st_size,
                                 "origin": None}]


def test_alibaba(tmp_path):
    """Timestamps in microseconds, offset and length in bytes, R/W."""
    ios, _, _ = imported(tmp_path, "alibaba", DATA / "alibaba_io_traces.csv")
    assert ios == {
        "0": [(0, 247_468_056, 4096, READ, 0), (1 * MS, 247_468_064, 4096, WRITE, 0), (1000 * MS, 0, 512, READ, 0)],
        "1": [(74_000, 16, 16384, WRITE, 0)],
    }


def test_tencent_in_a_tgz_and_renamed(tmp_path):
    """Unix seconds, offsets and sizes in 512-byte sectors, IOType 0 read and 1 write; the traces come as tgz."""
    archive = tmp_path / "2018-10-01-01.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(DATA / "tencent_2018-10-01-01.csv", arcname="2018-10-01-01.csv")
    ios, summary, _ = imported(tmp_path, "tencent", archive, options=("--rename", "1063=vol1063"))
    assert ios == {
        "vol1063": [(0, 0, 4096, READ, 0), (0, 2048, 8192, WRITE, 0), (1000 * MS, 4096, 4096, WRITE, 0)],
        "77": [(0, 100, 512, READ, 0), (3000 * MS, 9000, 65536, READ, 0)],
    }
    assert summary["inputs"][0]["name"] == f"{archive}:2018-10-01-01.csv"


def test_fio_iolog_v3(tmp_path):
    """Microseconds since the start (kept as they are), trim = discard, sync and datasync = flush."""
    ios, _, _ = imported(tmp_path, "fio-iolog", DATA / "fio_v3.iolog")
    assert ios == {"sdb": [(12_000, 8, 4096, READ, 0), (15_000, 2048, 8192, WRITE, 0),
                           (15_000, 4096, 65536, DISCARD, 0), (1 * MS, 0, 0, FLUSH, 0), (1_001_000, 0, 0, FLUSH, 0),
                           (2500_000, 0, 512, READ, 0)]}


def test_fio_iolog_v2_waits(tmp_path):
    """No times in version 2: each wait moves the time on by its microseconds."""
    ios, _, _ = imported(tmp_path, "fio-iolog", DATA / "fio_v2.iolog")
    assert ios == {"sdc": [(0, 0, 4096, READ, 0), (0, 8, 4096, WRITE, 0), (1_500_000, 16, 4096, READ, 0),
                           (1_750_000, 24, 8192, DISCARD, 0), (1_750_000, 0, 0, FLUSH, 0)]}


def test_blkparse_default_output(tmp_path):
    """Q events only, RWBS as blkparse writes it, the summary at the end not read, dev_t kept."""
    ios, summary, _ = imported(tmp_path, "blkparse", DATA / "blkparse_default.txt")
    assert ios == {
        "8_0": [(0, 223490, 4096, WRITE, 0), (2 * MS, 0, 0, FLUSH, F_SYNC),
                (2_100_000, 5000, 8192, WRITE, F_PREFLUSH | F_FUA | F_SYNC)],
        "8_16": [(1 * MS, 1024, 131072, READ, F_AHEAD), (1_500_000, 2048, 4096, READ, F_SYNC),
                 (3 * MS, 4096, 1048576, DISCARD, 0), (4 * MS, 8192, 4096, WRITE, F_META)],
    }
    with open_replay(tmp_path / "out" / "8_16.replay.0") as r:
        assert r.device == 8 << 20 | 16


def test_blkparse_of_a_real_capture_matches_record(tmp_path):
    """blkparse's text of a real capture imports to the IOs ``blkfleet record`` makes of the capture itself."""
    if not shutil.which("blkparse"):
        pytest.skip("needs blkparse (Debian blktrace)")
    text = tmp_path / "randmix.txt"
    with open(text, "w") as f:
        subprocess.run(["blkparse", "-i", "loop1", "-D", DATA.parent / "randmix"], stdout=f, check=True)
    ios, _, _ = imported(tmp_path, "blkparse", text.with_suffix(".txt"))
    rec = tmp_path / "rec"
    rec.mkdir()
    assert run("record", "-q", "-d", DATA.parent / "randmix", "-D", rec, "loop1")[0] == 0
    recorded = []
    for cpu in (0, 1):
        with open_replay(rec / f"loop1.replay.{cpu}") as r:
            recorded += list(iter_ios(r))
    t0 = min(t for t, *_ in recorded)  # blkparse prints times from the first event
    assert sorted((t - t0, s, n, op) for t, s, n, op, _f in recorded) == sorted(
        (t, s, n, op) for t, s, n, op, _f in ios["7_1"])


def test_mapped_csv(tmp_path):
    ios, _, _ = imported(tmp_path, "csv", DATA / "mapped.csv", options=(
        "--columns", "time=0,device=1,op=2,offset=3,size=4", "--delimiter", ";", "--time-unit", "ms",
        "--offset-unit", "512", "--size-unit", "512", "--ops", "rd=read,wr=write,flush=flush", "--skip-lines", "1"))
    assert ios == {"A": [(0, 100, 4096, READ, 0), (750_000, 200, 8192, WRITE, 0), (2500_000, 0, 0, FLUSH, 0)],
                   "B": [(750_000, 0, 512, READ, 0)]}


COMPRESSORS = {".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress}
try:
    import zstandard

    COMPRESSORS[".zst"] = lambda data: zstandard.ZstdCompressor().compress(data)
except ImportError:
    pass


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_inputs(tmp_path, suffix):
    packed = tmp_path / ("trace.csv" + suffix)
    packed.write_bytes(COMPRESSORS[suffix]((DATA / "msr_src1_2.csv").read_bytes()))
    assert imported(tmp_path, "msr", packed)[0] == imported(tmp_path / "plain", "msr", DATA / "msr_src1_2.csv")[0]


def test_zstandard_without_the_module_is_one_line(tmp_path, monkeypatch):
    packed = tmp_path / "t.csv.zst"
    packed.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    rc, _, err = run("import", "msr", packed, "-D", tmp_path / "o")
    assert rc == 2 and err == f"blkfleet: {packed}: zstandard-compressed, and the zstandard module is not installed\n"


def test_select_and_merge_by_rename(tmp_path):
    ios, summary, _ = imported(tmp_path, "tencent", DATA / "tencent_2018-10-01-01.csv",
                               options=("--select", "77", "--rename", "77=v"))
    assert list(ios) == ["v"] and summary["left_out"] == {"1063": 3}
    ios, _, _ = imported(tmp_path / "m", "tencent", DATA / "tencent_2018-10-01-01.csv",
                         options=("--rename", "77=all", "--rename", "1063=all"))
    assert [t for t, *_ in ios["all"]] == [0, 0, 0, 1000 * MS, 3000 * MS]  # merged, in time order


def test_tolerance_puts_ios_back_in_order(tmp_path):
    lines = (DATA / "alibaba_io_traces.csv").read_text().splitlines()
    lines.insert(3, "0,R,4096,4096,1577808000000900")  # 0.726 ms before the IO above it (device 0)
    trace = tmp_path / "t.csv"
    trace.write_text("\n".join(lines) + "\n")
    rc, _, err = run("import", "alibaba", trace, "-D", tmp_path / "o")
    assert rc == 2 and err == (f"blkfleet: {trace}: line 4: time goes backwards: 0.000726 s before an earlier IO of "
                               "the device (tolerance 0 s; --tolerance SECONDS puts IOs that much out of order back "
                               "in order)\n")
    ios, summary, _ = imported(tmp_path, "alibaba", trace, options=("--tolerance", "1ms"))
    # times now count from the first IO less the tolerance, so that an IO up to 1 ms before it fits
    assert [t for t, *_ in ios["0"]] == [1 * MS, 1_274_000, 2 * MS, 1001 * MS] and summary["reordered"] == 1


@pytest.mark.parametrize("fmt, text, line, problem", [
    ("msr", "128166372000000000,h,0,Read,0,4096,1\n128166372000000001,h,0,Read,0,4096\n", 2,
     "6 fields, expected 7"),
    ("msr", "128166372000000000,h,0,Read,0,4096,1\n128166372000000001,h,0,Read,0,4096\n"
     "128166372000000002,h,0,Read,0,4096,1,1\n", 2, "6 fields, expected 7"),  # the block's delimiters add up
    ("msr", "128166372000000000,h,0,Read,x12,4096,1\n", 1, "offset 'x12' is not a whole number"),
    ("msr", "128166372000000000,h,0,Readd,0,4096,1\n", 1, "operation 'Readd' is not one of 'Read', 'Write'"),
    ("msr", "128166372000000000,h,0,Read,-512,4096,1\n", 1, "offset '-512' is not a whole number"),
    ("alibaba", "0,R,9223372036854775808,4096,1\n", 1, "offset 9223372036854775808 + 4096 bytes ends beyond "
     "2^63 - 1 bytes"),
    ("alibaba", "0,R,0,4294967296,1\n", 1, "IO length 4294967296 bytes is more than 4294967295"),
    ("alibaba", "0,R,0,512,5000\n0,R,0,512,4000\n", 2, "time goes backwards: 0.001 s before the first IO of "
     "the trace (tolerance 0 s; --tolerance SECONDS puts IOs that much out of order back in order)"),
    ("tencent", "1538323200,0,8,2,1\n", 1, "operation '2' is not one of '0', '1'"),
    ("fio-iolog", "fio version 4 iolog\n", 1, "not a fio iolog: the first line is not 'fio version 2 iolog' or "
     "'fio version 3 iolog'"),
    ("fio-iolog", "fio version 3 iolog\n0 /dev/a add\n5 /dev/a frobnicate 0 1\n", 3, "action 'frobnicate' is not "
     "read, write, trim, sync, datasync, sync_file_range or wait"),
    ("fio-iolog", "fio version 3 iolog\n0 /dev/a read 0\n", 2, "4 fields, expected 3 (file action) or 5 (IO)"),
    ("fio-iolog", "fio version 3 iolog\n0 /dev/a read 0 4096\n1 /dev/a read 0\n2 /dev/a read 0 4096 7\n", 3,
     "4 fields, expected 3 (file action) or 5 (IO)"),  # the block's blanks add up
    ("blkparse", "not an event\n  8,0 3 1 0.000000000 697 Q W 223490 + 8 [a]\n", 1,
     "not an event line of blkparse's default output"),
    ("blkparse", "  8,0 3 1 0.000000000 697 Q W 2x3490 + 8 [a]\n", 1,
     "a Q event that is neither 'SECTOR + BLOCKS [COMMAND]', '[COMMAND]' nor a SCSI command"),
    ("blkparse", "  8,0 3 1 0.000000000 697 Q WX 1 + 8 [a]\n", 1, "RWBS 'WX' is not what blkparse writes"),
])
def test_bad_input_is_one_line_with_file_and_line(tmp_path, fmt, text, line, problem):
    trace = tmp_path / "bad.txt"
    trace.write_text(text)
    rc, stdout, err = run("import", fmt, trace, "-D", tmp_path / "o")
    assert (rc, stdout) == (2, "")
    assert err == f"blkfleet: {trace}: line {line}: {problem}\n"
    assert not list((tmp_path / "o").iterdir())  # nothing left behind


def test_damaged_gzip_is_one_line(tmp_path):
    data = gzip.compress("".join(f"{128166372000000000 + 37 * i},h,0,Read,{4096 * (i * 7919 % 100003)},4096,1\n"
                                 for i in range(20000)).encode())
    trace = tmp_path / "t.csv.gz"
    trace.write_bytes(data[: len(data) // 2])
    rc, _, err = run("import", "msr", trace, "-D", tmp_path / "o")
    assert rc == 2 and err.startswith(f"blkfleet: {trace}: line ") and "damaged compressed data" in err
    assert err.count("\n") == 1 and not list((tmp_path / "o").iterdir())


def test_earlier_output_is_kept_unless_forced(tmp_path):
    imported(tmp_path, "msr", DATA / "msr_src1_2.csv")
    rc, _, err = run("import", "tencent", DATA / "tencent_2018-10-01-01.csv", "-D", tmp_path / "out")
    assert rc == 2 and "of an earlier run (--force replaces them)" in err
    rc, _, err = run("import", "tencent", DATA / "tencent_2018-10-01-01.csv", "-D", tmp_path / "out", "--force", "-q")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1063.replay.0", "77.replay.0", "origin.json"]


def test_an_import_is_a_bundle_with_its_origin(tmp_path):
    imported(tmp_path, "msr", DATA / "msr_src1_2.csv")
    rc, out, err = run("bundle", "create", "-d", tmp_path / "out", "-F", "-o", tmp_path / "b.bundle")
    assert rc == 0, err
    rc, out, err = run("bundle", "info", tmp_path / "b.bundle")
    manifest = json.loads(out)
    assert manifest["format_version"] == 3 and manifest["origin"]["options"]["format"] == "msr"
    assert manifest["totals"]["ios"] == 5 and manifest["replay"]["devices"] == ["src1_1", "src1_2"]

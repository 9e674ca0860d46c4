"""``blkfleet transform`` (and ``bundle create`` with its options) on replay files: each step checked IO by IO
against what the docs say it does, the origin recorded and chained, bad options as one line."""

import contextlib
import io
import json
import random
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import iter_ios, open_replay
from blkfleet.replayfile.ops import DISCARD, FLUSH, READ, WRITE
from blkfleet.streams import chunks as ch
from blkfleet.streams.nativeout import NativeFile

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMAS = Path(__file__).resolve().parents[2] / "engine" / "blkfleet" / "schemas"
MS = 1_000_000


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def write(directory, device, cpu, ios):
    """A native replay file of (time, sector, nbytes, op) IOs."""
    directory.mkdir(parents=True, exist_ok=True)
    f = NativeFile(directory / f"{device}.replay.{cpu}")
    f.add(ch.make(*zip(*ios)) if ios else ch.empty())
    f.close()


def read(directory):
    """{file name: [(time, sector, nbytes, op)]} of the replay files of a directory."""
    out = {}
    for path in sorted(directory.glob("*.replay.*")):
        with open_replay(path) as r:
            out[path.name] = [(t, s, n, op) for t, s, n, op, _f in iter_ios(r)]
    return out


def transform(tmp_path, *inputs, options=(), ok=True):
    out = tmp_path / "out"
    rc, _, err = run("transform", *inputs, "-D", out, "-q", "--force", "--json", tmp_path / "t.json", *options)
    if ok:
        assert rc == 0, err
        return read(out), json.loads((tmp_path / "t.json").read_text())
    return rc, err


IOS = [(1000 * MS + k * MS, 8 * k, 4096, (READ, WRITE, DISCARD, FLUSH)[k % 4]) for k in range(20)]


@pytest.fixture
def trace(tmp_path):
    write(tmp_path / "in", "sda", 0, [io_ for io_ in IOS if io_[0] % (2 * MS) == 0])
    write(tmp_path / "in", "sda", 1, [io_ for io_ in IOS if io_[0] % (2 * MS)])
    return tmp_path / "in"


def test_no_option_changes_nothing(tmp_path, trace):
    out, doc = transform(tmp_path, trace)
    assert out == read(trace)
    assert doc["counts"]["ios_in"] == doc["counts"]["ios_out"] == 20


def test_window_and_op_filter(tmp_path, trace):
    out, doc = transform(tmp_path, trace, options=("--from", "5ms", "--duration", "10ms", "--skip", "discard,flush"))
    kept = [x for x in IOS if 1005 * MS <= x[0] < 1015 * MS and x[3] in (READ, WRITE)]
    assert sorted(out["sda.replay.0"] + out["sda.replay.1"]) == kept
    c = doc["counts"]
    assert (c["outside_window"], c["skipped_ops"], c["ios_out"]) == (10, 5, 5)
    assert doc["origin"]["options"] == {"base": "replay", "from_s": "0.005", "input_base": "replay",
                                        "skip": ["discard", "flush"], "to_s": "0.015"}


def test_shift_scale_align(tmp_path, trace):
    out, _ = transform(tmp_path, trace, options=("--shift", "1M", "--scale", "0.5", "--align", "8192"))
    for (_t, s, n, op), orig in zip(sorted(out["sda.replay.0"] + out["sda.replay.1"]), IOS):
        if op == FLUSH:
            assert (s, n) == (orig[1], orig[2])  # no data: left where it is
            continue
        offset = (orig[1] * 512 + (1 << 20)) // 2 // 8192 * 8192  # shifted, scaled, rounded down to the unit
        assert (s * 512, n) == (offset, 8192)  # 4 KiB grown to the 8 KiB block


def test_wrap_keeps_alignment_and_counts_moves(tmp_path):
    rng = random.Random(5)
    ios = [(k * 10_000, rng.randrange(2 << 30) // 4096 * 8, rng.choice((4096, 65536, 1 << 20)), READ)
           for k in range(3000)]
    write(tmp_path / "big", "d", 0, ios)
    out, doc = transform(tmp_path, tmp_path / "big", options=("--wrap", "256M"))
    size = 256 << 20
    got = out["d.replay.0"]
    assert len(got) == 3000 and all(s * 512 + n <= size and s * 512 % 4096 == 0 for _t, s, n, _op in got)
    wrapped = sum(1 for a, b in zip(ios, got) if a[1] != b[1])
    moved = sum(1 for _t, s, n, _op in ios if s * 512 % size + n > size)
    assert doc["counts"]["wrapped"] == wrapped > 2000 and doc["counts"]["moved_from_end"] == moved > 0
    assert all(b[1] * 512 == a[1] * 512 % size for a, b in zip(ios, got) if a[1] * 512 % size + a[2] <= size)


def test_renames_merge_devices_in_time_order(tmp_path):
    write(tmp_path / "a", "x", 0, [(0, 0, 512, READ), (20, 8, 512, READ)])
    write(tmp_path / "a", "y", 0, [(10, 16, 512, WRITE), (30, 24, 512, WRITE)])
    out, doc = transform(tmp_path, tmp_path / "a", options=("--rename", "x=t", "--rename", "y=t"))
    assert out == {"t.replay.0": [(0, 0, 512, READ), (10, 16, 512, WRITE), (20, 8, 512, READ),
                                  (30, 24, 512, WRITE)]}
    assert doc["files"][0]["source"] == "0:x,0:y"


def test_mixing_with_start_offsets_and_rates(tmp_path):
    write(tmp_path / "a", "x", 0, [(5 * MS, 0, 512, READ), (7 * MS, 8, 512, READ)])
    write(tmp_path / "b", "x", 0, [(100 * MS, 16, 512, WRITE), (104 * MS, 24, 512, WRITE)])
    out, doc = transform(tmp_path, tmp_path / "a", tmp_path / "b",
                         options=("--start-offset", "1=1ms", "--rate-factor", "1=2", "--time-scale", "3"))
    # T0 = 5 ms; b starts 1 ms after it, twice as fast; then every time from T0 x 3
    assert out == {"x.replay.0": [(5 * MS, 0, 512, READ), (8 * MS, 16, 512, WRITE), (11 * MS, 8, 512, READ),
                                  (14 * MS, 24, 512, WRITE)]}
    assert doc["origin"]["options"]["rate_factor"] == ["1=2"] and doc["origin"]["options"]["time_scale"] == 3.0


def test_origin_chain_into_the_bundle_manifest(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    rc, _, err = run("import", "msr", DATA / "foreign" / "msr_src1_2.csv", "-D", tmp_path / "imported", "-q")
    assert rc == 0, err
    rc, _, err = run("transform", tmp_path / "imported", "-D", tmp_path / "t1", "--rename", "src1_2=a", "-q")
    assert rc == 0, err
    bundle = tmp_path / "b.bundle"
    rc, _, err = run("bundle", "create", "-d", tmp_path / "t1", "-F", "-o", bundle, "--wrap", "1G", "--align", "4096")
    assert rc == 0, err
    rc, out, _ = run("bundle", "info", bundle)
    manifest = json.loads(out)
    jsonschema.validate(manifest, json.loads((SCHEMAS / "manifest.schema.json").read_text()))
    origin = manifest["origin"]
    assert manifest["format_version"] == 3 and origin["command"] == "transform"
    assert origin["options"]["wrap"] == 1 << 30 and origin["counts"]["wrapped"] == 1
    earlier = origin["inputs"][0]["origin"]
    assert earlier["options"]["rename"] == ["src1_2=a"] and earlier["inputs"][0]["origin"]["command"] == "import"
    assert manifest["replay"]["devices"] == ["a", "src1_1"] and not list(tmp_path.glob(".transform.*"))


def test_bundle_without_transforms_is_unchanged(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    assert run("record", "-q", "-d", DATA / "randmix", "-D", rec, "loop1")[0] == 0
    rc, out, _ = run("bundle", "create", "-d", rec, "-F", "-o", tmp_path / "b", "--json", "-")
    assert rc == 0 and "origin" not in json.loads(out)["result"] and json.loads(out)["result"]["format_version"] == 1


@pytest.mark.parametrize("options, problem", [
    (("--to", "1s", "--duration", "2s"), "--to and --duration exclude each other"),
    (("--from", "2s", "--to", "1s"), "the time window is empty (--to must come after --from)"),
    (("--skip", "reads"), "--skip 'reads': not one of read, write, discard, flush, write_zeroes"),
    (("--shift", "100"), "--shift 100: a multiple of 512 bytes"),
    (("--align", "1536"), "--align 1536: a power of two"),
    (("--rename", "sda=a/b"), "invalid output device name 'a/b'"),
    (("--rename", "3:sda=b"), "--rename '3:sda=b': expected OLD=NEW or K:OLD=NEW (K an input number 0..0)"),
    (("--start-offset", "1=1s"), "--start-offset '1=1s': expected K=VALUE with K an input number 0..0"),
    (("--wrap", "1k"), "--wrap 1024: the target must hold at least 4096 bytes"),
    (("--shift=-1G",), "--shift -1073741824 moves an IO before the start of the device"),
    (("--time-scale", "0"), "must be a number > 0, not '0'"),
    (("--wrap", "12x"), "invalid size '12x'"),
])
def test_bad_options_are_one_line(tmp_path, trace, options, problem):
    rc, err = transform(tmp_path, trace, options=options, ok=False)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("blkfleet: ") and problem in err, err
    assert not list((tmp_path / "out").glob("*.replay.*"))


def test_capture_input_equals_its_recording(tmp_path):
    """A capture as input gives the IOs ``blkfleet record`` makes of it, file by file."""
    out, _ = transform(tmp_path, DATA / "randmix")
    rec = tmp_path / "rec"
    rec.mkdir()
    assert run("record", "-q", "-d", DATA / "randmix", "-D", rec, "loop1")[0] == 0
    assert out == read(rec) and len(find_per_cpu(rec, "loop1", "replay")) == 2

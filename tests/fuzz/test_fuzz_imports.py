"""Fuzz: ``blkfleet import`` of every format on mutated sample files (fields replaced by hostile values, lines
dropped, repeated, swapped, cut or filled with junk, bytes flipped; plain, compressed, cut compressed data, tar
archives), with random options. 10,000 cases of each format in this process, and a sample as real processes:
every case exits 0, or 2 with exactly one ``blkfleet: ...`` line."""

import bz2
import gzip
import io
import lzma
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from helpers.fuzz import CASES, SUBPROCESS_CASES, Fuzz, clear, mutate_bytes, scratch, subprocess_cases

DATA = Path(__file__).resolve().parents[1] / "data" / "foreign"
HOSTILE = [b"", b"-1", b"0", b"1", b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
           b"4294967295", b"4294967296", b"1e9", b"0x10", b"1_000", b" 12", b"12 ", "\u0663".encode(), b"NaN",
           b"9" * 4400, b"9" * 30, b".5", b"5.", b".", b"-0", b"+7", b"\x00", b"\xff\xfe", b"R", b"W", b"Read",
           b"Write", b"read", b"trim", b"wait", b"sync", b"add", b"Q", b"FWS", b"a/b", b"..", b"-x", b"\t", b",", b";"]
FORMATS = {
    "msr": ["msr_src1_2.csv"], "alibaba": ["alibaba_io_traces.csv"], "tencent": ["tencent_2018-10-01-01.csv"],
    "fio-iolog": ["fio_v3.iolog", "fio_v2.iolog"], "blkparse": ["blkparse_default.txt"], "csv": ["mapped.csv"],
}
CSV_OPTIONS = ["--columns", "time=0,device=1,op=2,offset=3,size=4", "--delimiter", ";", "--time-unit", "ms",
               "--offset-unit", "512", "--size-unit", "512", "--ops", "rd=read,wr=write,flush=flush", "--skip-lines",
               "1"]


def _split(line):
    for sep in (b",", b";"):
        if sep in line:
            return line.split(sep), sep
    return line.split(b" "), b" "


def mutate_text(data, rng):
    """Line and field changes (kept mostly well-formed so the checks behind the first ones are reached)."""
    lines = data.split(b"\n")
    for _ in range(1 + min(int(rng.expovariate(0.8)), 4)):
        kind = rng.random()
        i = rng.randrange(len(lines))
        if kind < 0.45:
            fields, sep = _split(lines[i])
            k = rng.randrange(len(fields))
            if rng.random() < 0.8:
                fields[k] = rng.choice(HOSTILE)
            elif rng.random() < 0.5:
                del fields[k]
            else:
                fields.insert(k, rng.choice(HOSTILE))
            lines[i] = sep.join(fields)
        elif kind < 0.55:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind < 0.62:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif kind < 0.68:
            del lines[i]
        elif kind < 0.74:
            lines.insert(i, rng.choice((b"", b"   ", b"junk", rng.randbytes(rng.randrange(1, 40)))))
        elif kind < 0.78:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif kind < 0.82:
            lines[i] += b"\r"
        elif kind < 0.86:  # a much longer trace: the same lines again, later
            lines = lines + lines[1:]
        else:
            return mutate_bytes(b"\n".join(lines), rng)
    return b"\n".join(lines)


def packed(data, rng, path):
    """The input file: plain (mostly), compressed, compressed and cut, or in a tar archive."""
    kind = rng.random()
    if kind < 0.6:
        path.write_bytes(data)
    elif kind < 0.85:
        compress = rng.choice((gzip.compress, lzma.compress, bz2.compress))
        out = compress(data)
        if rng.random() < 0.3:
            out = out[: rng.randrange(len(out) + 1)]
        path.write_bytes(out)
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz" if rng.random() < 0.5 else "w") as tar:
            for k in range(rng.choice((1, 1, 2))):
                info = tarfile.TarInfo(f"part{k}.csv")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        out = buf.getvalue()
        if rng.random() < 0.2:
            out = out[: rng.randrange(len(out) + 1)]
        path.write_bytes(out)
    return path


def case(fmt, rng, seeds, src, out):
    clear(src)
    data = mutate_text(rng.choice(seeds), rng) if rng.random() < 0.95 else rng.choice(seeds)
    trace = packed(data, rng, src / "trace")
    argv = ["import", fmt, trace, "-D", out, "-q", "--force"]
    if fmt == "csv":
        argv += CSV_OPTIONS
    options = rng.random()
    if options < 0.15:
        argv += ["--tolerance", rng.choice(("1ms", "1", "0.5s", "100us"))]
    elif options < 0.22:
        argv += ["--rename", rng.choice(("src1_2=a", "0=a", "1063=a", "77=b", "sdb=x/y", "8,0=..", "A=-x", "8,16=ok",
                                         "1=", "=b"))]
    elif options < 0.27:
        argv += ["--select", rng.choice(("src1_2", "1", "77", "/dev/sdb", "8,0", "B", "nothing"))]
    return argv


@pytest.fixture
def dirs():
    src, out = scratch("fuzz-import-in-"), scratch("fuzz-import-out-")
    try:
        yield src, out
    finally:
        shutil.rmtree(src)
        shutil.rmtree(out)


def seeds_of(fmt):
    return [(DATA / name).read_bytes() for name in FORMATS[fmt]]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fuzz_import(fmt, tmp_path, dirs):
    src, out = dirs
    seeds = seeds_of(fmt)
    fuzz = Fuzz(f"import-{fmt}", tmp_path / "failures")
    for seed in range(CASES):
        fuzz.case(seed, case(fmt, random.Random(f"{fmt}-{seed}"), seeds, src, out), [src])
    assert fuzz.count == CASES and fuzz.outcomes[0] > CASES // 10 and fuzz.outcomes[2] > CASES // 10, fuzz.outcomes


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fuzz_import_as_processes(fmt, tmp_path):
    cases = []
    for seed in range(SUBPROCESS_CASES // 4):
        src, out = tmp_path / f"in{seed}", tmp_path / f"out{seed}"
        src.mkdir()
        cases.append((f"import-{fmt} process {seed}",
                      case(fmt, random.Random(f"{fmt}-process-{seed}"), seeds_of(fmt), src, out)))
    assert subprocess_cases(cases) == []

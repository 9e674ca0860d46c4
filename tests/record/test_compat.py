"""--compat output is byte-identical to btrecord 1.2.0: the documented golden vector, then side by side
with the Debian btrecord on generated traces that hit every quirk, for several flag sets."""

import hashlib
import random
import shutil
import subprocess

import pytest

from blkfleet.cli import main
from blkfleet.trace import TraceRecord, TraceWriter

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"
needs_btrecord = pytest.mark.skipif(not shutil.which("btrecord") and not shutil.os.path.exists(BTRECORD),
                                    reason="Debian package blktrace (btrecord) is not installed")

GOLDEN = bytes.fromhex(
    "000001000000000064ca9a3b000000000100000000000000"
    "0300000000000000030000000000000064ca9a3b00000000"
    "881300000000000000200000000000000000000000000000"
    "701700000000000000001000000000000000000000000000"
    "000000000000000000000000000000000000000000000000"
    "02000000000000001062333c00000000401f000000000000"
    "001000000000000001000000000000002823000000000000"
    "00020000000000000100000000000000"
)


def rec(time, sector, nbytes, action, pdu=b"", cpu=0):
    return TraceRecord(time, sector, nbytes, action, 4242, 0x700004, cpu, 0, pdu)


def write_trace(path, records, byteorder="<"):
    with TraceWriter(path, byteorder=byteorder) as w:
        for r in records:
            w.write(r)


def golden_inputs(d):
    write_trace(d / "fake.blktrace.0", [
        r for i in range(10) for r in (
            rec(2_000_000_000 + i * 1_000_000, 100 + i * 8, 4096, 0x00110001),
            rec(2_000_000_100 + i * 1_000_000, 100 + i * 8, 4096, 0x00110004),
            rec(2_000_000_200 + i * 1_000_000, 0, 0, 0x0011000A, (1).to_bytes(8, "big")),
        )
    ])
    write_trace(d / "fake.blktrace.1", [
        rec(999_999_995, 0, 0, 0x04000000, b"fio".ljust(16, b"\0"), 1),
        rec(1_000_000_100, 5000, 8192, 0x001A0001, cpu=1),
        rec(1_000_000_200, 6000, 1048576, 0x20120001, cpu=1),
        rec(1_000_000_300, 0, 0, 0x001E0001, cpu=1),
        rec(1_000_000_400, 7000, 4096, 0x00120101, (7).to_bytes(8, "little"), 1),
        rec(1_010_000_400, 8000, 4096, 0x00110001, cpu=1),
        rec(1_020_000_400, 9000, 512, 0x08110001, cpu=1),
    ])


def test_golden_vector(tmp_path):
    golden_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["record", "-q", "--compat", "-d", str(tmp_path), "-D", str(out), "fake"]) == 0
    data = (out / "fake.replay.1").read_bytes()
    assert data == GOLDEN
    assert hashlib.sha256(data).hexdigest() == "a73947ee934c16ff42bf879171f7d02950b737daa29c94443201525e8fc45584"
    zero = (out / "fake.replay.0").read_bytes()
    assert len(zero) == 304
    assert zero[16:32] == (1).to_bytes(8, "little") + (8).to_bytes(8, "little")


QUIRKY_ACTIONS = [
    0x00190001,  # O_DIRECT read
    0x001A0001,  # O_DIRECT write
    0x801A0001,  # FUA write
    0x001E0001,  # empty flush (written as a write, 0 bytes)
    0x201A0001,  # discard (written as a write)
    0x08110001,  # readahead
    0x00110101,  # cgroup-flagged Q: dropped by btrecord
    0x00190004,  # G
    0x00110009,  # P
    0x0011000A,  # U (8-byte payload)
    0x01850008,  # C
    0x04000002,  # message notify
]


def random_trace(rng, n, start):
    """Per-CPU stream with the quirks: time 0 first Q, equal-to-window gaps, backwards steps above genesis."""
    t = start
    out = [rec(start, 8, 4096, 0x00190001)]
    for i in range(n):
        action = rng.choice(QUIRKY_ACTIONS)
        pdu = b""
        if action & 0x100 or action & 0xFF in (0x0A,):
            pdu = rng.randbytes(8)
        elif action == 0x04000002:
            pdu = b"hello"[: rng.randint(1, 5)]
        step = rng.choice([0, 1, 100, 5_000, 99_999, 100_000, 100_001, 9_999_999, 10_000_000, 10_000_001, 30_000_000])
        if start and i > 5 and rng.random() < 0.05:
            step = -rng.randint(1, 2_000_000)
        t = max(start, t + step)
        nbytes = 0 if action == 0x001E0001 else rng.choice([512, 4096, 8192, 65536, 1 << 20])
        out.append(rec(t, rng.randrange(1 << 30), nbytes, action, pdu))
    return out


FLAG_SETS = [[], ["-m", "100000", "-M", "16"], ["-M", "1"], ["-m", "1"], ["-M", "512", "-m", "1000000000"]]


@needs_btrecord
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: " ".join(f) or "default")
def test_side_by_side_with_btrecord(tmp_path, seed, flags):
    rng = random.Random(seed)
    src = tmp_path / "in"
    src.mkdir()
    cpus = rng.randint(1, 3)
    for cpu in range(cpus):
        start = 0 if (seed + cpu) % 3 == 0 else rng.randrange(1, 1 << 40)
        byteorder = ">" if seed == 5 and cpu == 0 else "<"
        records = random_trace(rng, rng.randint(0, 400), start) if cpu or seed != 4 else []
        write_trace(src / f"sdz.blktrace.{cpu}", records, byteorder)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    c = subprocess.run([BTRECORD, *flags, "-d", str(src), "-D", str(theirs), "sdz"], capture_output=True)
    assert c.returncode == 0, c.stderr
    assert main(["record", "-q", "--compat", *flags, "-d", str(src), "-D", str(ours), "sdz"]) == 0
    for cpu in range(cpus):
        name = f"sdz.replay.{cpu}"
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


@needs_btrecord
def test_time_inversion_leaves_provisional_header_like_btrecord(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_trace(src / "sdz.blktrace.0", [rec(5_000_000 + i, i * 8, 4096, 0x00190001) for i in range(20)]
                + [rec(4_000_000, 8, 4096, 0x00190001)])
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    c = subprocess.run([BTRECORD, "-d", str(src), "-D", str(theirs), "sdz"], capture_output=True)
    assert c.returncode == 2
    assert main(["record", "-q", "--compat", "-d", str(src), "-D", str(ours), "sdz"]) == 2
    assert (ours / "sdz.replay.0").read_bytes() == (theirs / "sdz.replay.0").read_bytes()


@needs_btrecord
@pytest.mark.parametrize("level", ["-v", "-vv"])
def test_verbose_output_matches_btrecord(tmp_path, level, capfd):
    golden_inputs(tmp_path)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    c = subprocess.run([BTRECORD, level, "-d", str(tmp_path), "-D", "theirs", "fake"], capture_output=True,
                       cwd=tmp_path, text=True)
    assert c.returncode == 0
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        capfd.readouterr()
        assert main(["record", "-q", "--compat", level, "-d", ".", "-D", "ours", "fake"]) == 0
        err = capfd.readouterr().err
    finally:
        os.chdir(cwd)
    assert err.replace("ours/", "theirs/") == c.stderr
    for cpu in (0, 1):
        rec_name = f"fake.replay.{cpu}.rec"
        assert (ours / rec_name).read_text() == (theirs / rec_name).read_text()

"""Real kernel traces (tests/data, captured with the ftrace blk tracer on loop devices): --compat equals the
Debian btrecord byte for byte, and the native files hold exactly the Q events blkparse lists."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import iter_ios, open_replay
from blkfleet.replayfile.ops import DISCARD, F_AHEAD, F_FUA, F_PREFLUSH, F_SYNC, FLUSH, READ, WRITE

DATA = Path(__file__).resolve().parents[1] / "data"
WORKLOADS = sorted(p.parent for p in DATA.glob("*/meta.json"))
needs_tools = pytest.mark.skipif(
    not (shutil.which("btrecord") or Path("/usr/sbin/btrecord").exists()) or not shutil.which("blkparse"),
    reason="Debian package blktrace (btrecord, blkparse) is not installed",
)


def device_of(workload):
    return json.loads((workload / "meta.json").read_text())["device"]


def test_fixtures_present():
    names = {w.name for w in WORKLOADS}
    assert {"randmix", "seqlarge", "fs", "multicpu"} <= names


@needs_tools
@pytest.mark.parametrize("flags", [[], ["-m", "100000", "-M", "16"], ["-M", "1"]],
                         ids=lambda f: " ".join(f) or "default")
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda p: p.name)
def test_compat_equals_btrecord(tmp_path, workload, flags):
    dev = device_of(workload)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    btrecord = shutil.which("btrecord") or "/usr/sbin/btrecord"
    c = subprocess.run([btrecord, *flags, "-d", str(workload), "-D", str(theirs), dev], capture_output=True)
    assert c.returncode == 0, c.stderr
    assert main(["record", "-q", "--compat", *flags, "-d", str(workload), "-D", str(ours), dev]) == 0
    files = sorted(p.name for p in theirs.iterdir())
    assert files and files == sorted(p.name for p in ours.iterdir())
    for name in files:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def blkparse_queued(workload, dev):
    """Per CPU: [(time_ns, sector, bytes, rwbs, pid)] of Q events, as blkparse prints them."""
    out = subprocess.run(
        ["blkparse", "-q", "-i", dev, "-D", str(workload), "-f", "%a %c %T %t %S %N %d %p\n"],
        capture_output=True, text=True, check=True,
    ).stdout
    per_cpu = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 8 and f[0] == "Q":
            t = int(f[2]) * 1_000_000_000 + int(f[3])
            per_cpu.setdefault(int(f[1]), []).append((t, int(f[4]), int(f[5]), f[6], int(f[7])))
    return per_cpu


def expected_op(rwbs, nbytes):
    """The native op and flags blkparse's RWBS string implies (independent of blkfleet's classify)."""
    body = rwbs[1:] if rwbs.startswith("F") and len(rwbs) > 1 and rwbs[1] in "DWRN" else rwbs
    preflush = body is not rwbs
    kind, tail = body[0], body[1:]
    flags = (F_FUA if tail.startswith("F") else 0) | (F_AHEAD if "A" in tail else 0) | (F_SYNC if "S" in tail else 0)
    if kind == "D":
        return DISCARD, flags
    if preflush and nbytes == 0:
        return FLUSH, flags
    op = WRITE if kind == "W" else READ
    return op, flags | (F_PREFLUSH if preflush else 0)


@needs_tools
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda p: p.name)
def test_native_matches_blkparse(tmp_path, workload):
    dev = device_of(workload)
    assert main(["record", "-q", "-d", str(workload), "-D", str(tmp_path), dev]) == 0
    parsed = blkparse_queued(workload, dev)
    total = 0
    for cpu, path in enumerate(find_per_cpu(tmp_path, dev, "replay")):
        with open_replay(path) as reader:
            ios = list(iter_ios(reader))
        want = parsed.get(cpu, [])
        assert len(ios) == len(want) == reader.io_count, path
        for (t, sector, nbytes, op, flags), (bt, bsector, bbytes, rwbs, _pid) in zip(ios, want):
            assert (sector, nbytes) == (bsector, bbytes)
            assert (t - ios[0][0]) == (bt - want[0][0])
            eop, eflags = expected_op(rwbs, nbytes)
            assert op == eop, rwbs
            assert flags & (F_FUA | F_AHEAD | F_SYNC | F_PREFLUSH) == eflags, rwbs
        total += len(ios)
    assert total > 0

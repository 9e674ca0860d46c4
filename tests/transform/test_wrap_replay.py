"""A trace that spans 2 GiB, wrapped around onto a 256 MiB loop device, replays with no IO refused, and the kernel
receives every IO where the wrapped trace put it (root: loop devices, the ftrace tracer)."""

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.replayfile import iter_ios, open_replay
from blkfleet.replayfile.ops import READ
from blkfleet.streams import chunks as ch
from blkfleet.streams.nativeout import NativeFile
from helpers.tracing import queued_extents, traced

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "engine")}
pytestmark = pytest.mark.root
IOS = 4000


def replay(src, target, tmp_path, name):
    (tmp_path / "map").write_text(f"big {os.path.basename(target)}\n")
    res = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "blkfleet", "replay", "-d", src, "-M", tmp_path / "map", "--json",
                           res, "big"], env=ENV, capture_output=True, text=True, timeout=300)
    return proc.returncode, (json.loads(res.read_text()) if res.exists() else None), proc.stderr


def test_wrapped_2gib_trace_replays_on_256mib_with_no_refusal(tmp_path, loopdev, tracer):
    rng = random.Random(11)
    sizes = [rng.choice((4096, 8192, 65536, 131072)) for _ in range(IOS)]
    sectors = [rng.randrange((2 << 30) - n) // 4096 * 8 for n in sizes]
    sectors[-1], sizes[-1] = ((3 << 28) - 4096) // 512, 65536  # crosses the end of 256 MiB once wrapped
    assert max(s * 512 + n for s, n in zip(sectors, sizes)) > (2 << 30) - (64 << 20)  # the whole 2 GiB is used
    (tmp_path / "big").mkdir()
    f = NativeFile(tmp_path / "big" / "big.replay.0")
    f.add(ch.make(range(0, IOS * 20_000, 20_000), sectors, sizes, bytes([READ]) * IOS))
    f.close()
    target = loopdev(256 << 20)

    code, _doc, err = replay(tmp_path / "big", target, tmp_path, "unwrapped")
    assert code == 2 and "do not fit it (size 268435456 bytes" in err  # as it is, the target refuses it

    assert main(["transform", str(tmp_path / "big"), "-D", str(tmp_path / "wrapped"), "--wrap", "256M", "-q",
                 "--json", str(tmp_path / "t.json")]) == 0
    counts = json.loads((tmp_path / "t.json").read_text())["counts"]
    assert counts["ios_out"] == IOS and counts["wrapped"] > IOS * 3 // 4 and counts["moved_from_end"] > 0
    with traced([target], tmp_path / "seen", tracer):
        code, doc, err = replay(tmp_path / "wrapped", target, tmp_path, "wrapped")
    assert code == 0, err
    assert doc["total"]["ios"] == IOS and doc["total"]["errors"]["count"] == 0
    with open_replay(tmp_path / "wrapped" / "big.replay.0") as r:
        planned = Counter((s, n) for _t, s, n, _op, _f in iter_ios(r))
    assert all(s * 512 + n <= 256 << 20 and s % 8 == 0 for s, n in planned)  # inside, and 4 KiB aligned still
    assert queued_extents(tmp_path / "seen", target) == planned  # the kernel got every IO where it was put

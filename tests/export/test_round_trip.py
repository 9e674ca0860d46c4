"""Round trips through fio's iolog, on real IO (root: loop devices, the ftrace tracer, fio):

- a capture of fio on a loop device -> native replay files -> fio iolog v3 -> import -> native keeps every IO
  (op, offset, size, and time to 1 µs);
- fio replaying the exported iolog onto another loop device issues the same IOs: the kernel's Q events there
  (captured again) are the captured ones, op, offset and size."""

import contextlib
import io
import json
import os
import shutil
import subprocess
from collections import Counter

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import iter_ios, open_replay
from helpers.tracing import traced

pytestmark = pytest.mark.root


def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()


def replay_ios(directory, device):
    """Every IO of a device's replay files: (time, op, sector, bytes)."""
    out = []
    for path in find_per_cpu(str(directory), device, "replay"):
        with open_replay(path) as r:
            out += [(t, op, s, n) for t, s, n, op, _f in iter_ios(r)]
    return sorted(out)


def fio(*args):
    run = subprocess.run(["fio", "--output-format=json", *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout[run.stdout.index("{"):])
    return sum(job[d]["total_ios"] for job in doc["jobs"] for d in ("read", "write", "trim"))


def test_capture_iolog_import_and_fio_replay(tmp_path, loopdev, tracer):
    if not shutil.which("fio"):
        pytest.skip("needs fio")
    source, target = loopdev(128 << 20), loopdev(128 << 20)
    name = os.path.basename(source)
    with traced([source], tmp_path / "cap", tracer):
        ios = fio(f"--filename={source}", "--direct=1", "--ioengine=libaio", "--name=rand", "--rw=randrw",
                  "--bs=4k", "--iodepth=8", "--size=64M", "--number_ios=1500", "--name=seq", "--rw=write",
                  "--bs=64k", "--iodepth=4", "--offset=64M", "--size=16M", "--number_ios=250")
    assert ios == 1750
    (tmp_path / "native").mkdir()
    cli("record", "-q", "-d", tmp_path / "cap", "-D", tmp_path / "native", name)
    captured = replay_ios(tmp_path / "native", name)
    assert len(captured) == 1750

    # native -> iolog v3 -> import -> native: every IO, its time to the microsecond
    cli("export", "fio-iolog", tmp_path / "native", "-o", tmp_path / "x.iolog", "--filename",
        f"{name}=/dev/{name}")
    cli("import", "fio-iolog", tmp_path / "x.iolog", "-D", tmp_path / "back", "-q")
    back = replay_ios(tmp_path / "back", name)
    t0 = captured[0][0]
    assert sorted(((t - t0) // 1000 * 1000, op, s, n) for t, op, s, n in captured) == back

    # fio replays the iolog onto the target: the kernel sees the same IOs
    cli("export", "fio-iolog", tmp_path / "native", "-o", tmp_path / "y.iolog", "--filename", f"{name}={target}")
    with traced([target], tmp_path / "cap2", tracer):
        assert fio("--name=replay", f"--read_iolog={tmp_path / 'y.iolog'}", "--direct=1", "--ioengine=libaio",
                   "--iodepth=16") == 1750
    (tmp_path / "native2").mkdir()
    cli("record", "-q", "-d", tmp_path / "cap2", "-D", tmp_path / "native2", os.path.basename(target))
    replayed = replay_ios(tmp_path / "native2", os.path.basename(target))
    assert Counter((op, s, n) for _t, op, s, n in replayed) == Counter((op, s, n) for _t, op, s, n in captured)

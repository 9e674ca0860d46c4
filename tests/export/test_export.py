"""``blkfleet export``: the fio iolog of every operation and of several devices, the fio job file (fio parses
it), bad file names as one line."""

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.replayfile.ops import DISCARD, FLUSH, READ, WRITE, WRITE_ZEROES
from blkfleet.streams import chunks as ch
from blkfleet.streams.nativeout import NativeFile

DATA = Path(__file__).resolve().parents[1] / "data"


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def write(directory, device, ios):
    directory.mkdir(parents=True, exist_ok=True)
    f = NativeFile(directory / f"{device}.replay.0")
    f.add(ch.make(*zip(*ios)))
    f.close()


def test_iolog_of_every_op_and_two_devices(tmp_path):
    write(tmp_path / "r", "sda", [(5_000, 8, 4096, READ), (7_999, 16, 8192, WRITE), (9_000, 0, 0, FLUSH)])
    write(tmp_path / "r", "sdb", [(6_500, 2048, 65536, DISCARD), (12_000, 4096, 4096, WRITE_ZEROES)])
    rc, _, err = run("export", "fio-iolog", tmp_path / "r", "-o", tmp_path / "x.iolog", "--filename",
                     "sdb=/dev/vdb", "--json", tmp_path / "s.json")
    assert rc == 0, err
    assert (tmp_path / "x.iolog").read_text() == (
        "fio version 3 iolog\n0 /dev/sda add\n0 /dev/sda open\n0 /dev/vdb add\n0 /dev/vdb open\n"
        "0 /dev/sda read 4096 4096\n1 /dev/vdb trim 1048576 65536\n2 /dev/sda write 8192 8192\n"
        "4 /dev/sda sync 0 0\n7 /dev/vdb write 2097152 4096\n7 /dev/sda close\n7 /dev/vdb close\n")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["write_zeroes_as_writes"] == 1 and summary["ios"] == 5
    assert summary["files"] == {"sda": "/dev/sda", "sdb": "/dev/vdb"}


def test_iolog_imports_back(tmp_path):
    rc, _, err = run("export", "fio-iolog", DATA / "randmix", "-o", tmp_path / "x.iolog")
    assert rc == 0, err
    assert run("import", "fio-iolog", tmp_path / "x.iolog", "-D", tmp_path / "back", "-q")[0] == 0
    assert run("stats", tmp_path / "back", "--json", tmp_path / "a.json")[0] == 0
    assert run("stats", DATA / "randmix", "--json", tmp_path / "b.json")[0] == 0
    a, b = (json.loads((tmp_path / n).read_text())["devices"]["loop1"] for n in ("a.json", "b.json"))
    assert (a["ios"], a["bytes"], a["all"]["seek"]) == (b["ios"], b["bytes"], b["all"]["seek"])


@pytest.mark.parametrize("name, problem", [
    ("loop1=/dev/a b", "holds a blank or a control character"),
    ("loop1=", "must be 1 to 256 characters"),
    ("sdz=/dev/x", "expected DEV=PATH for one of loop1"),
])
def test_bad_file_names(tmp_path, name, problem):
    rc, _, err = run("export", "fio-iolog", DATA / "randmix", "-o", tmp_path / "x", "--filename", name)
    assert rc == 2 and err.count("\n") == 1 and problem in err and not (tmp_path / "x").exists()


def test_fio_job_file_parses_and_follows_the_phases(tmp_path):
    rc, _, err = run("export", "fio-job", DATA / "randmix", "-o", tmp_path / "job.fio", "--phases", "3")
    assert rc == 0, err
    text = (tmp_path / "job.fio").read_text()
    jobs = [line for line in text.splitlines() if line.startswith("[loop1-")]
    assert jobs == ["[loop1-1]", "[loop1-2]", "[loop1-3]"]
    assert "rw=randrw" in text and "bssplit=4096/100,4096/100" in text and "iodepth=3" in text
    reads = sum(int(line.split()[2]) for line in text.splitlines() if line.startswith("; loop1-"))
    assert reads == 1169  # every read of the trace in some phase
    if shutil.which("fio"):
        run_ = subprocess.run(["fio", "--parse-only", str(tmp_path / "job.fio")], capture_output=True, text=True)
        assert run_.returncode == 0, run_.stderr


def test_iolog_of_btrecord_files(tmp_path):
    """btrecord's files (every IO at its bunch's time, reads and writes only) export too."""
    (tmp_path / "compat").mkdir()
    assert run("record", "-q", "--compat", "-d", DATA / "randmix", "-D", tmp_path / "compat", "loop1")[0] == 0
    rc, _, err = run("export", "fio-iolog", tmp_path / "compat", "-o", tmp_path / "x.iolog", "--json",
                     tmp_path / "s.json")
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ios"] == 2000 and summary["ops"] == {"read": 1169, "write": 831}
    lines = (tmp_path / "x.iolog").read_text().splitlines()
    times = [int(line.split()[0]) for line in lines[3:-1]]
    assert len(times) == 2000 and times == sorted(times)  # the two CPU files merged by time

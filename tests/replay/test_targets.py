"""Replay targets: names and maps resolve only to block devices, each target is opened once (the workers use
the parent's very descriptor), -W opens it exclusively, and two writers never share a device."""

import contextlib
import ctypes
import io
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from blkfleet.cli import main
from blkfleet.errors import BlkfleetError
from blkfleet.replay.target import Target
from blkfleet.replayfile import native
from blkfleet.replayfile.ops import READ, WRITE
from helpers import ENV
from helpers.replay import map_file, record, replay, slow_trace, spread_trace, start, wait_or_kill, workers_of

pytestmark = pytest.mark.root
SYS_KCMP, KCMP_FILE = 312, 0  # x86_64


def fds_on(pid, device):
    """The descriptors of process ``pid`` open on ``device``."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == device:
                found.append(int(fd))
        except OSError:
            pass
    return found


def same_open_file(pid1, fd1, pid2, fd2):
    """kcmp(2): whether two descriptors are the same open file description (not merely the same device)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2)
    assert ret >= 0, os.strerror(ctypes.get_errno())
    return ret == 0


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="kcmp's system call number is x86_64's")
def test_workers_use_the_descriptor_the_parent_checked(tmp_path, loopdev):
    spread_trace(tmp_path, seconds=5.0)
    target = loopdev(128 << 20)
    proc, _res = start(tmp_path, target, "-c", "2", "-W")
    try:
        kids = workers_of(proc, 2)
        time.sleep(0.5)
        (parent_fd,) = fds_on(proc.pid, target)
        for kid in kids:
            (kid_fd,) = fds_on(kid, target)
            assert same_open_file(proc.pid, parent_fd, kid, kid_fd)
        flags = open(f"/proc/{proc.pid}/fdinfo/{parent_fd}").read()
        octal = int(next(line.split()[1] for line in flags.splitlines() if line.startswith("flags:")), 8)
        assert octal & os.O_DIRECT and octal & os.O_ACCMODE == os.O_RDWR
    finally:
        proc.send_signal(signal.SIGTERM)
        wait_or_kill(proc, 15)


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path, loopdev):
    spread_trace(tmp_path, seconds=10.0, cpus=1, op=WRITE)
    target = loopdev(128 << 20)
    first, _res = start(tmp_path, target, "-W")
    try:
        workers_of(first, 1)
        began = time.monotonic()
        code, _doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, target), "-W", "--force", "loop1")
        assert time.monotonic() - began < 5
        assert code == 2 and err.count("\n") == 1, err
        assert f"another replay writes to it (pid {first.pid}, started 20" in err
        reads = tmp_path / "reads"
        reads.mkdir()
        slow_trace(reads, seconds=0.5, ios=200)
        code, doc, err = replay("-d", reads, "-M", map_file(reads, target), "--json", reads / "r.json", "loop1")
        assert code == 0 and doc["total"]["ios"] == 200, err  # reading beside the writer is allowed
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        wait_or_kill(first, 15)
    code, _doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, target), "-W", "-x", "20", "loop1")
    assert code == 0, err  # the lock went with the first writer


def test_read_only_replays_share_a_device(tmp_path, loopdev):
    slow_trace(tmp_path, seconds=2.0, ios=400)
    target = loopdev(64 << 20)
    procs = [subprocess.Popen([sys.executable, "-m", "blkfleet", "replay", "-d", str(tmp_path), "-M",
                               str(map_file(tmp_path, target)), "loop1"], env=ENV, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()


def test_a_device_open_exclusively_elsewhere_is_never_written(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    holder = os.open(target, os.O_RDONLY | os.O_EXCL)  # as a mount or a device-mapper table claims it
    try:
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--force", "loop1")
        assert code == 2 and err.count("\n") == 1 and "the kernel refuses an exclusive open" in err, err
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "loop1")
        assert code == 0, err  # reads need no exclusive open
    finally:
        os.close(holder)


def test_a_mounted_device_is_never_written_even_with_force(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", target], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", target, str(mnt)], check=True)
    try:
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "--force", "loop1")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert code == 2 and err.count("\n") == 1 and f"in use by {mnt}" in err, err


@pytest.mark.parametrize("mapped,problem", [
    ("pts_.._.._tmp_x", "invalid target 'pts_.._.._tmp_x'"),
    ("-W", "invalid target '-W'"),
    ("../../etc/passwd", "invalid target"),
    ("pts_ptmx", "not a block device"),  # /dev/pts/ptmx: a character device
    ("/etc/passwd", "not a block device"),
    ("/dev/null", "not a block device"),
])
def test_map_targets_resolve_only_to_block_devices(tmp_path, mapped, problem):
    src = record(tmp_path, "randmix")
    path = tmp_path / "map"
    path.write_text(f"loop1 {mapped}\n")
    code, _doc, err = replay("-d", src, "-M", path, "loop1")
    assert code == 2 and problem in err and err.count("\n") == 1, err


def test_recorded_names_are_checked(tmp_path):
    src = record(tmp_path, "randmix")
    for name in ("pts_.._.._tmp_x", "..", "a/b"):
        code, _doc, err = replay("-d", src, "--", name)
        assert code == 2 and "invalid recorded device name" in err and err.count("\n") == 1, err
    path = tmp_path / "map"
    path.write_text("pts_.._.._tmp_x loop0\n")
    code, _doc, err = replay("-d", src, "-M", path, "loop1")
    assert code == 2 and "invalid recorded device name" in err


def test_binary_and_non_utf8_maps(tmp_path):
    src = record(tmp_path, "randmix")
    for data in (b"loop1 \xff\xfe\n", bytes(range(256)), b"\0" * 10, b"loop1 loop0\0\n"):
        path = tmp_path / "map"
        path.write_bytes(data)
        code, _doc, err = replay("-d", src, "-M", path, "loop1")
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo, tmp_path):
        code, _doc, err = replay("-d", src, "-M", path, "loop1", timeout=20)
        assert code == 2 and "not a regular file" in err and err.count("\n") == 1, err


TOKENS = ["loop1", "loop0", "sda", "nvme0n1", "dm-0", "cciss_c0d0", "pts_.._.._tmp_x", "..", ".", "_", "/", "-",
          "--", "-W", "#", " ", "\t", "\n", "\r\n", "\0", "\x7f", "\xff", "é", "\u2028", "/dev/loop0", "/dev/../etc",
          "/etc/passwd", "/dev/null", "/dev/zero", "a" * 200, "/" + "a" * 5000, "loop1 loop2", "FROM TO"]


def fuzz_maps(count, device, seed=10):
    """Map files: valid ones (onto ``device``), mutated bytes, token soups, random bytes."""
    rng = random.Random(seed)
    name = os.path.basename(device)
    valid = [f"loop1 {name}\n".encode(), f"# c\nloop1   {device}  # x\n".encode(), b"loop1 sdb\nloop2 sdc\n"]
    tokens = TOKENS + [name, device]
    for k in range(count):
        kind = k % 4
        if kind == 0:
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = "".join(rng.choice(tokens) + rng.choice([" ", "\n", ""]) for _ in range(rng.randint(1, 8)))
            data = data.encode("utf-8", "surrogateescape")
        elif kind == 2:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            data = f"{rng.choice(['loop1'] + tokens)} {rng.choice(tokens)}\n".encode("utf-8", "surrogateescape")
        yield bytes(data)


def test_fuzz_maps_exit_0_or_2_with_one_line(tmp_path, loopdev):
    """10,000 map files through the real command line, in this process: exit 2 (or 0) and one line each.
    The replay file's IOs lie beyond any device, so a map that resolves to a real block device is refused
    after the target checks, never replayed."""
    src = tmp_path / "src"
    src.mkdir()
    w = native.NativeWriter(src / "loop1.replay.0")
    w.add_bunch(1_000_000_000, [(1 << 50, 4096, 0, READ, 0, 1)])
    w.close()
    path = tmp_path / "map"
    codes = {"do not fit": 0}
    started = time.monotonic()
    for k, data in enumerate(fuzz_maps(10_000, loopdev(8 << 20))):
        path.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["replay", "-d", str(src), "-M", str(path), "loop1"])
        text = err.getvalue()
        assert code in (0, 2) and text.count("\n") == 1 and text.startswith("blkfleet: "), (k, data, code, text)
        codes[code] = codes.get(code, 0) + 1
        codes["do not fit"] += "do not fit" in text
    assert codes.get(2, 0) == 10_000
    assert time.monotonic() - started < 300
    assert codes["do not fit"] > 100  # maps that resolved to the real device were refused after its checks
    assert block_fds() == []  # every target opened was closed again


def block_fds():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISBLK(os.stat(f"/proc/self/fd/{fd}").st_mode):
                found.append(fd)
        except OSError:
            pass
    return found


def test_results_state_the_target_probe(tmp_path, loopdev):
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    res = tmp_path / "res.json"
    code, doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "--json", res, "loop1")
    assert code == 0 and doc["probes"] == [], err  # no -W: no probe
    json.dumps(doc)


def test_lock_directory_must_be_root_only(tmp_path, loopdev):
    """A lock directory others could write is refused, not used."""
    src = record(tmp_path, "randmix")
    target = loopdev(128 << 20)
    os.makedirs("/run/blkfleet/locks", mode=0o700, exist_ok=True)
    os.chmod("/run/blkfleet/locks", 0o777)
    try:
        code, _doc, err = replay("-d", src, "-M", map_file(tmp_path, target), "-W", "loop1")
    finally:
        os.chmod("/run/blkfleet/locks", 0o700)
    assert code == 2 and "refusing this lock directory" in err and err.count("\n") == 1, err



def test_two_recorded_devices_onto_one_target_share_it(tmp_path, loopdev):
    slow_trace(tmp_path, seconds=0.5, ios=200, device="loop1")
    spread_trace(tmp_path, seconds=0.5, ios=200, cpus=1, op=WRITE, device="loop2")
    target = loopdev(64 << 20)
    path = tmp_path / "map"
    path.write_text(f"loop1 {target}\nloop2 {os.path.basename(target)}\n")
    res = tmp_path / "res.json"
    code, doc, err = replay("-d", tmp_path, "-M", path, "-W", "--json", res, "loop1", "loop2")
    assert code == 0, err
    assert {d: doc["devices"][d]["ios"] for d in ("loop1", "loop2")} == {"loop1": 200, "loop2": 200}
    assert [p["device"] for p in doc["probes"]] == ["loop1", "loop2"]


def test_a_fifo_swapped_in_after_the_check_does_not_hang_the_open(tmp_path, loopdev, monkeypatch):
    """The path is stat'ed, then opened: one swapped for a FIFO in between (faked here: the stat sees the block
    device) is refused at once, for reading and for writing; the real device still opens blocking."""
    dev = loopdev()
    real = Target("loop1", dev)
    assert os.get_blocking(real.fd) and real.size > 0
    real.close()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    device = os.stat(dev)
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: device if path == fifo else os.lstat(path))
    for write in (False, True):
        outcome = []

        def run(write, outcome):
            try:
                Target("loop1", fifo, write=write)
            except BlkfleetError as e:
                outcome.append(str(e))

        opener = threading.Thread(target=run, args=(write, outcome), daemon=True)
        opener.start()
        opener.join(10)
        if opener.is_alive():  # unstick the blocked open before failing
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        assert not opener.is_alive() and outcome, f"open of a FIFO (write={write}) hung or passed"
        assert "changed while it was being opened" in outcome[0] or "cannot open" in outcome[0], outcome

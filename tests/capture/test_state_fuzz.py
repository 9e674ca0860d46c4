"""Fuzz the capture state: capture.json contents through ``capture status|stop|start|restore`` (root).

10,400 cases: realistic states (dead captures of each backend and mode, finished ones) naming paths, pids
and files outside the directory, then mutated: fields removed or given other types, huge and non-finite
numbers, control characters, deep nesting, byte flips, truncation, non-UTF-8 bytes, other file types; some
with garbage raw pages, staged files or trace files beside them. Every case must exit 0 or 2, with one line
on stderr when it fails and none when it succeeds, never start a capture, and never touch anything outside
the directory: a bystander process named as the pid lives on, victim files and directories stay as they
were, and no run record or tracer snapshot names the directory. 10,000 cases run in this process
(``blkfleet.cli.main``), 400 through real subprocesses.
"""

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from blkfleet import cli
from blkfleet.capture import rundir, tracefs
from blkfleet.process import process_start
from helpers import ENV

pytestmark = pytest.mark.root

IN_PROCESS = 10_000
SUBPROCESS = 400
COMMANDS = (["status"], ["stop"], ["start"], ["restore"], ["stop", "--check"], ["start", "--check"],
            ["stop", "--token", "t1"])


class World:
    """The directory under test and everything outside it that must not change."""

    def __init__(self, root, device):
        self.root = root
        self.cap = os.path.join(root, "cap")
        self.outside = os.path.join(root, "outside")
        os.mkdir(self.outside)
        self.victim = os.path.join(self.outside, "victim")
        with open(self.victim, "w") as f:
            f.write("precious\n")
        with open(os.path.join(self.outside, "victim.state.json"), "w") as f:
            json.dump({"tracing": self.outside, "values": {"current_tracer": "pwned"}, "devices": {}}, f)
        self.device = device
        self.bystander = subprocess.Popen(["sleep", "3600"])
        self.bystander_start = process_start(self.bystander.pid)
        self.before = self.view()

    def view(self):
        """The files outside the directory, and whether a run record or tracer snapshot names the directory
        (others' captures may come and go meanwhile: theirs are not looked at)."""
        listing = {}
        for base, _, names in os.walk(self.outside):
            for name in names:
                st = os.lstat(os.path.join(base, name))
                listing[os.path.join(base, name)] = (st.st_size, st.st_mtime_ns, st.st_mode)
        ours = []
        paths = [tracefs.SNAPSHOT_PATH]
        if os.path.isdir(rundir.RUN_DIR):
            paths += [os.path.join(rundir.RUN_DIR, n) for n in os.listdir(rundir.RUN_DIR) if n.endswith(".json")]
        for path in paths:
            try:
                with open(path) as f:
                    if self.root in f.read():
                        ours.append(path)
            except OSError:
                pass
        return listing, ours

    def check(self, case):
        assert self.bystander.poll() is None, f"case {case}: the bystander was signalled"
        assert self.view() == self.before, f"case {case}: something outside the directory changed"

    def close(self):
        self.bystander.kill()
        self.bystander.wait()


def base_states(world, rng):
    """Realistic states that name things outside the directory."""
    out = world.outside
    pid = rng.choice([world.bystander.pid, 1, os.getpid(), 1 << 21, 0, -1])
    start = world.bystander_start if pid == world.bystander.pid else rng.choice([1, 0, None])
    common = {"version": 2, "pid": pid, "pid_start": start, "host": "h", "devices": [rng.choice(["loop0", "sda",
              os.path.basename(world.device)])], "device_args": [world.device], "output_dir": out,
              "start_time": "2026-01-01T00:00:00.000+00:00", "start_epoch": time.time() - 5,
              "log": world.victim, "state_file": world.victim, "lock_path": world.victim,
              "run_id": f"{rng.getrandbits(128):032x}", "token": rng.choice([None, "t1", "t2"]), "recovered": [],
              "options": {"act_mask": "queue", "buffer_kb": 512}, "requested_backend": "auto"}
    events_info = {"mode": "events", "ncpus": 2, "page_size": 4096, "event_id": 1000, "blk_entry_type": None,
                   "event_fields": {"common_pid": [4, 4], "dev": [8, 4], "sector": [16, 8], "nr_sector": [24, 4],
                                    "rwbs": [28, 8]}, "devices": common["devices"]}
    running = dict(common, state=rng.choice(["running", "stopping", "starting"]))
    summary = {"files": [f"{common['devices'][0]}.blktrace.{c}" for c in range(2)], "queued": 10, "records": 10,
               "bytes": 40960, "file_bytes": 480, "drops": 0, "drop_reports": 0, "error": rng.choice([None, "x"]),
               "devices": {common["devices"][0]: {"queued": 10, "files": {}}}}
    return [
        dict(running, backend="ftrace", mode="events", backend_info=events_info),
        dict(running, backend="ftrace", mode="raw", backend_info=dict(events_info, mode="raw", blk_entry_type=14)),
        dict(running, backend="ftrace", mode="pipe", backend_info={"mode": "pipe", "ncpus": 2}),
        dict(running, backend="blktrace", mode="relay", backend_info={"blktrace_pid": world.bystander.pid,
                                                                     "debugfs_mounted": True}),
        dict(common, state=rng.choice(["stopped", "failed", "salvaged"]), backend="ftrace", mode="events",
             stop_time="then", stop_reason="SIGTERM", duration=1.0, summary=summary, collected=rng.random() < .5),
        dict(common, state="stopped", summary=dict(summary, files=rng.choice([["/etc/shadow"], ["../../x"],
             [world.victim], ["a/b.blktrace.0"], ["x.blktrace.0\n"]]))),
    ]


def random_value(rng, depth=0):
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30, 4096, 65536])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 1e-300, float("nan"), float("inf")])
    if kind == 4:
        return rng.choice(["", "x", "a\nb", "\x00", "\u2028", "é" * 3, "../../etc/passwd", "/etc/shadow",
                           "-rf", "x" * 70000, "loop0", "0" * 32, "\ud800"])
    if kind == 5:
        return "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(20)))
    if kind == 6:
        return rng.choice(["running", "stopped", "dead", "failed", "salvaged", "ftrace", "blktrace", "events",
                           "raw", "pipe", "relay"])
    if kind == 7:
        return rng.randrange(-5, 70000)
    if kind in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["files", "pid", "mode", "state", "x", "page_size", "ncpus", "event_fields", "error"]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def mutate_doc(doc, rng):
    """Change one to three things somewhere in the document."""
    for _ in range(rng.randrange(1, 4)):
        target = doc
        path = []
        while isinstance(target, dict) and target and rng.random() < 0.6:
            key = rng.choice(list(target))
            if not isinstance(target[key], (dict, list)):
                break
            path.append(key)
            target = target[key]
        if isinstance(target, dict) and target:
            key = rng.choice(list(target))
            roll = rng.random()
            if roll < 0.25:
                del target[key]
            else:
                target[key] = random_value(rng)
        elif isinstance(target, list) and target:
            target[rng.randrange(len(target))] = random_value(rng)
    return doc


def deep(rng):
    depth = rng.choice([20, 500, 5000, 100000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    inner = opener * depth + "1" + closer * depth
    return ('{"version": 2, "state": "stopped", "summary": ' + inner + "}").encode()


def mutate_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if not data:
            break
        pos = rng.randrange(len(data))
        roll = rng.random()
        if roll < 0.4:
            data[pos] = rng.randrange(256)
        elif roll < 0.6:
            del data[pos:pos + rng.randrange(1, 20)]
        elif roll < 0.8:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            data = data[:pos]
    return bytes(data)


def make_case(world, rng):
    """``(contents of capture.json or a special kind, extra files)`` for one case."""
    roll = rng.random()
    doc = rng.choice(base_states(world, rng))
    if roll < 0.05:
        data = json.dumps(doc).encode()
    elif roll < 0.55:
        data = json.dumps(mutate_doc(doc, rng)).encode("utf-8", "surrogatepass")
    elif roll < 0.80:
        data = mutate_bytes(json.dumps(doc).encode(), rng)
    elif roll < 0.86:
        data = deep(rng)
    elif roll < 0.92:
        data = rng.choice([b"", b"null", b"[]", b'"x"', b"1", b"\xef\xbb\xbf{}", b"\xff\xfe{}", b"{" * 3,
                           b'{"version": 2, "state": "stopped", "pid": NaN}', b'{"state": Infinity}',
                           json.dumps(doc).encode().replace(b'"', b"'"), b"\x00" * 64])
    elif roll < 0.96:
        data = json.dumps(doc).encode().decode().encode("utf-16")
    else:
        data = rng.choice(["symlink", "directory", "fifo", "dangling"])
    extras = []
    if rng.random() < 0.3:
        extras.append(rng.choice(["raw", "staging", "tracefiles", "raw-link", "reserve-link"]))
    return data, extras


def build(world, data, extras, rng):
    if os.path.lexists(world.cap):
        shutil.rmtree(world.cap)
    os.mkdir(world.cap, 0o700)
    path = os.path.join(world.cap, "capture.json")
    if data == "symlink":
        os.symlink(world.victim, path)
    elif data == "dangling":
        os.symlink(os.path.join(world.outside, "nothing"), path)
    elif data == "directory":
        os.mkdir(path)
    elif data == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as f:
            f.write(data)
    for extra in extras:
        if extra == "raw":
            os.mkdir(os.path.join(world.cap, "raw"))
            for cpu in range(2):
                with open(os.path.join(world.cap, "raw", f"cpu{cpu}"), "wb") as f:
                    f.write(os.urandom(rng.choice([100, 4096, 8192, 12000])))
        elif extra == "staging":
            os.mkdir(os.path.join(world.cap, ".capture.tmp"))
            with open(os.path.join(world.cap, ".capture.tmp", "loop0.blktrace.0"), "wb") as f:
                f.write(os.urandom(200))
        elif extra == "tracefiles":
            with open(os.path.join(world.cap, "loop0.blktrace.0"), "wb") as f:
                f.write(os.urandom(rng.choice([0, 47, 48, 500])))
            os.symlink(world.victim, os.path.join(world.cap, "loop0.blktrace.1"))
        elif extra == "raw-link":
            os.symlink(world.outside, os.path.join(world.cap, "raw"))
        else:
            os.symlink(world.victim, os.path.join(world.cap, ".capture.reserve"))


def argv_for(command, world):
    argv = ["capture", command[0], "-D", world.cap, *command[1:]]
    if command[0] == "start":
        argv += ["-d", world.device]
    return argv


def check_outcome(case, argv, code, out, err):
    assert code in (0, 2), f"case {case}: {argv}: exit {code}: {err}"
    if code == 2:
        assert err.startswith("blkfleet: ") and err.count("\n") == 1, f"case {case}: {argv}: {err!r}"
    else:
        assert err == "", f"case {case}: {argv}: {err!r}"
        assert argv[1] != "start" or "--check" in argv, f"case {case}: a start from a fuzzed state ran: {out}"
        json.loads(out)


@pytest.fixture
def world(loopdev):
    root = tempfile.mkdtemp(prefix="blkfleet-fuzz-", dir="/dev/shm")
    w = World(root, loopdev(8 << 20))
    try:
        yield w
    finally:
        w.close()
        shutil.rmtree(root)


@pytest.mark.slow
def test_fuzzed_capture_state(world):
    rng = random.Random(20261201)
    codes = {0: 0, 2: 0}
    for case in range(IN_PROCESS):
        data, extras = make_case(world, rng)
        build(world, data, extras, rng)
        argv = argv_for(COMMANDS[case % len(COMMANDS)], world)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
        check_outcome(case, argv, code, out.getvalue(), err.getvalue())
        codes[code] += 1
        world.check(case)
    # Both outcomes happen: states that are refused, and states that are read (and dead ones salvaged).
    assert codes[0] > 300 and codes[2] > 3000, codes

    for case in range(IN_PROCESS, IN_PROCESS + SUBPROCESS):
        data, extras = make_case(world, rng)
        build(world, data, extras, rng)
        argv = argv_for(COMMANDS[case % len(COMMANDS)], world)
        run = subprocess.run([sys.executable, "-m", "blkfleet", *argv], capture_output=True, text=True, env=ENV,
                             timeout=60)
        assert "Traceback" not in run.stderr, f"case {case}: {run.stderr}"
        check_outcome(case, argv, run.returncode, run.stdout, run.stderr)
        world.check(case)

"""The fuzz harness: mutators for binary files and JSON documents, and runners that hold every case to the rule
for bad input (exit 0, or exit 2 with exactly one stderr line ``blkfleet: ...``; no exception, no hang).

Cases are made by a seeded ``random.Random`` (fast: ten thousand cases of a kind in seconds, where a property
test library spends most of its time drawing); a failing case names its seed and leaves its input under
``$BLKFLEET_FUZZ_FAILURES`` (default: the test's tmp directory), so ``Fuzz(kind, seed=N)`` reproduces it.
Most cases run ``blkfleet.cli.main`` in this process; ``subprocess_cases`` runs a sample as real processes.
"""

import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from blkfleet.cli import main
from helpers import ENV

CASES = int(os.environ.get("BLKFLEET_FUZZ_CASES", 10_000))  # in-process cases of every kind
SUBPROCESS_CASES = 40  # of every kind (320 in all), through python -m blkfleet
CASE_SECONDS = 10  # one case taking longer is a hang

INTERESTING = [0, 1, 2, 4, 5, 7, 8, 31, 32, 127, 128, 255, 256, 511, 512, 513, 4095, 4096, 65535, 65536,
               (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 53, (1 << 54) - 1, 1 << 54, (1 << 63) - 1,
               1 << 63, (1 << 64) - 1]
JSON_VALUES = [None, True, False, 0, -1, 1, 7, 2 ** 31, 2 ** 53 + 1, 2 ** 63, 2 ** 64, 10 ** 29, -(10 ** 29), 0.5,
               -0.0, 1e308, float("inf"), float("nan"), "", "x", "7:1", "7:1\n", "loop1", "../../etc/passwd",
               "a" * 300, "\u00e9\u0000", [], [1, 2], {}, {"a": 1}, {"ios": 1, "bytes": 1}]


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds=CASE_SECONDS):
    def on_alarm(signum, frame):
        raise Hang(f"one case took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def scratch(prefix):
    """A fresh directory on tmpfs when there is one (cases write small files thousands of times)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def clear(directory):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def check_outcome(rc, err, what):
    """The rule for bad input; returns None or the problem."""
    if "Traceback" in err:
        return f"{what}: a traceback on stderr"
    if rc == 0:
        return None
    if rc != 2:
        return f"{what}: exit code {rc}, not 0 or 2; stderr: {err[-500:]!r}"
    lines = err.splitlines()
    if len(lines) != 1 or not lines[0].startswith("blkfleet: ") or not err.endswith("\n"):
        return f"{what}: exit 2 without exactly one 'blkfleet: ' line on stderr: {err[-500:]!r}"
    return None


def run_main(argv):
    """(exit code, stdout, stderr) of ``blkfleet.cli.main(argv)`` in this process; exceptions propagate."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit():
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


class Fuzz:
    """Counts and checks the cases of one kind; ``failure`` keeps the input of a failing case."""

    def __init__(self, kind, failures_dir):
        self.kind = kind
        self.failures_dir = Path(os.environ.get("BLKFLEET_FUZZ_FAILURES", failures_dir))
        self.count = 0
        self.outcomes = {0: 0, 2: 0}

    def case(self, seed, argv, inputs):
        """Run one case in process; ``inputs``: paths to keep if it fails."""
        try:
            rc, _out, err = run_main(argv)
        except BaseException as e:  # noqa: B036 - any escape (SystemExit, Hang, RecursionError...) is the bug
            self.failure(seed, argv, inputs, f"{type(e).__name__}: {e}")
            raise
        problem = check_outcome(rc, err, f"{self.kind} case {seed}")
        if problem:
            self.failure(seed, argv, inputs, problem)
            raise AssertionError(problem)
        self.count += 1
        self.outcomes[rc] += 1
        return rc

    def failure(self, seed, argv, inputs, problem):
        keep = self.failures_dir / f"{self.kind}-{seed}"
        keep.mkdir(parents=True, exist_ok=True)
        for p in inputs:
            p = Path(p)
            if p.is_dir():
                shutil.copytree(p, keep / p.name, dirs_exist_ok=True, symlinks=True)
            elif p.exists():
                shutil.copy(p, keep / p.name)
        (keep / "case.txt").write_text(f"{problem}\nargv: {argv}\n")
        sys.stderr.write(f"fuzz {self.kind}: case {seed} failed, input kept in {keep}: {problem}\n")


def subprocess_cases(cases, timeout=60):
    """Run [(what, argv)] as ``python -m blkfleet`` (two at a time); return the problems found."""
    env = dict(ENV)

    def one(case):
        what, argv = case
        try:
            run = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, argv)], capture_output=True, text=True,
                                 env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"{what}: no exit within {timeout} s"
        return check_outcome(run.returncode, run.stderr, what)

    with ThreadPoolExecutor(2) as pool:
        return [p for p in pool.map(one, cases) if p]


def run_cases(kind, make, failures_dir):
    """CASES cases of ``kind`` in this process: ``make(rng, work)`` writes one into a scratch directory and returns
    its argv (a failing case keeps that directory). Returns the outcome counts, {0: n, 2: n}."""
    work = scratch(f"fuzz-{kind}-")
    try:
        fuzz = Fuzz(kind, failures_dir)
        for case in range(CASES):
            fuzz.case(case, make(random.Random(f"{kind}-{case}"), work), [work])
        assert fuzz.count == CASES
        return fuzz.outcomes
    finally:
        clear(work)
        work.rmdir()


def process_cases(kind, make, base):
    """SUBPROCESS_CASES cases of ``kind`` as real processes, each made by ``make(rng, work)`` in its own directory
    under ``base``; the problems found."""
    cases = []
    for case in range(SUBPROCESS_CASES):
        work = base / f"c{case}"
        work.mkdir()
        cases.append((f"{kind} process case {case}", make(random.Random(f"{kind}-process-{case}"), work)))
    return subprocess_cases(cases)


# --------------------------------------------------------------------------------------------- mutators

def mutate_bytes(data, rng, fields=(), count=None):
    """``data`` with 1..6 random changes; ``fields``: (offset, width) places worth overwriting with an
    interesting integer (headers, counts)."""
    data = bytearray(data)
    for _ in range(count or 1 + min(int(rng.expovariate(0.7)), 5)):
        kind = rng.random()
        if fields and kind < 0.35:
            offset, width = rng.choice(fields)
            if offset + width <= len(data):
                value = rng.choice(INTERESTING) & ((1 << 8 * width) - 1)
                data[offset:offset + width] = value.to_bytes(width, rng.choice(("little", "little", "big")))
        elif kind < 0.55 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif kind < 0.65 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, 1))
        elif kind < 0.75:
            del data[rng.randrange(len(data) + 1):]
        elif kind < 0.82:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.choice((1, 4, 8, 16, 24, 48)))
        elif kind < 0.88 and data:
            i = rng.randrange(len(data))
            del data[i:i + rng.choice((1, 8, 24, 48))]
        elif kind < 0.94 and data:
            i = rng.randrange(len(data))
            data[i:i] = data[i:i + rng.choice((8, 24, 48, 64))]
        elif data:
            offset = rng.randrange(0, len(data), 4)
            width = rng.choice((4, 8))
            if offset + width <= len(data):
                data[offset:offset + width] = struct.pack("<Q" if width == 8 else "<I",
                                                          rng.choice(INTERESTING) & ((1 << 8 * width) - 1))
    return bytes(data)


def _paths(doc, max_depth=12):
    """(path, value) of a JSON document's values, down to ``max_depth`` (not into a deep nest put there)."""
    stack = [((), doc)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if len(path) < max_depth and isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((path + (k,), v) for k, v in items)


def _replace(doc, path, value):
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _nudged(value, rng):
    """A value near ``value`` (same type mostly): numbers moved a little or to a limit, strings edited."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice((value + 1, value - 1, value * 2, -value, 0, rng.choice(INTERESTING), value + 0.5))
    if isinstance(value, float):
        return rng.choice((value * 10, -value, 0.0, value + 1, round(value) if math.isfinite(value) else 7))
    if isinstance(value, str):
        return rng.choice((value + "\n", value[:-1], value.upper(), value + "x", " " + value, value * 3, ""))
    return rng.choice(JSON_VALUES)


def _copy(value):
    try:
        return json.loads(json.dumps(value))
    except RecursionError:
        return value


def deep(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def mutate_json(doc, rng, rehash=None):
    """Text of ``doc`` changed: mostly structurally (values replaced, nudged, removed, added, deep nesting), else
    as text (truncated, a byte flipped, not UTF-8). ``rehash(doc)`` is applied after a structural change (to
    keep a manifest's id right, so the change reaches the checks behind it)."""
    doc = json.loads(json.dumps(doc))
    if rng.random() < 0.85:
        for _ in range(1 + min(int(rng.expovariate(1.0)), 4)):
            paths = list(_paths(doc))
            path, value = rng.choice(paths)
            kind = rng.random()
            if kind < 0.35:
                doc = _replace(doc, path, _nudged(value, rng))
            elif kind < 0.6:
                doc = _replace(doc, path, rng.choice(JSON_VALUES))
            elif kind < 0.72 and path:
                parent = doc
                for p in path[:-1]:
                    parent = parent[p]
                del parent[path[-1]]
            elif kind < 0.82 and isinstance(value, dict):
                value[rng.choice(("extra", "ios", "name", "files", "devices", "summary", "\n"))] = rng.choice(
                    JSON_VALUES)
            elif kind < 0.88 and isinstance(value, list) and value:
                value.append(_copy(rng.choice(value)))
            elif kind < 0.92:
                doc = _replace(doc, path, deep(rng.choice((70, 500, 5000))))
            else:
                doc = _replace(doc, path, [value])
        if rehash and rng.random() < 0.9:
            try:
                rehash(doc)
            except Exception:  # noqa: S110 - a document too broken to rehash is sent as it is
                pass
        try:
            return json.dumps(doc, allow_nan=True).encode()
        except (RecursionError, ValueError):
            return b"[" * 100_000 + b"]" * 100_000
    text = json.dumps(doc).encode()
    kind = rng.random()
    if kind < 0.3:
        return text[:rng.randrange(len(text) + 1)]
    if kind < 0.5:
        return text + rng.choice((b"\n", b" x", b"}", b"\xff"))
    if kind < 0.7:
        return b"\xff\xfe" + text
    return mutate_bytes(text, rng, count=1)

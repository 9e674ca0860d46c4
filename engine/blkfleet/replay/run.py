"""``blkfleet replay``: check everything, start pinned worker processes at one instant, collect results.

Workers are processes (no shared interpreter lock), one per worker CPU slot, each pinned with
sched_setaffinity. They talk to the parent over pipes: "ready" after opening the targets, then per iteration
"go at T" and back the per-IO outcome. SIGINT/SIGTERM stop every worker within a second; partial results are
still written. A worker that dies is detected and reported.
"""

import datetime
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass, field

from ..errors import BlkfleetError
from ..replayfile.ops import DISCARD, FLUSH, WRITE, WRITE_ZEROES
from ..results import document as results
from . import realtime, worker
from .ioengines import open_engine
from .schedule import load_streams, make_plans
from .target import Target, device_path, parse_map

START_DELAY_NS = 50_000_000
STOP_GRACE_S = 2.0


@dataclass
class ReplayOptions:
    input_dir: str = "."
    devices: tuple = ()
    find: bool = False
    base: str = "replay"
    cpus: int = 0  # 0: one worker per recorded CPU, at most the CPUs we may run on less one
    iterations: int = 1
    map_files: tuple = ()
    no_stall: bool = False
    verbose: int = 0
    write_enable: bool = False
    acc: float = 1.0
    json: str = None
    start_at: float = None  # wall-clock seconds since the epoch
    engine: str = "aio"
    depth: int = 0  # 0: the targets' request queue size (at most 512)
    force: bool = False
    late_threshold_ns: int = 1_000_000
    batch_window_ns: int = 0
    realtime: object = "auto"  # "auto", "on", "off"; resolved to a bool before the workers start
    engine_name: str = ""
    bundle_id: str = None
    source: str = None  # what to name as the input in the results (the bundle file, else input_dir)
    formats: set = field(default_factory=set)


def _cpus():
    return sorted(os.sched_getaffinity(0))


def validate(opts):
    if not opts.acc > 0:
        raise BlkfleetError(f"invalid acceleration factor {opts.acc} (-x must be a positive number)")
    if opts.iterations < 1:
        raise BlkfleetError(f"invalid number of iterations {opts.iterations} (-I must be >= 1)")
    ncpus = len(_cpus())
    if opts.cpus and not 0 < opts.cpus <= ncpus:
        raise BlkfleetError(f"invalid number of cpus {opts.cpus} (-c must be 1..{ncpus})")
    if opts.realtime not in ("auto", "on", "off", True, False):
        raise BlkfleetError(f"invalid --realtime {opts.realtime!r} (auto, on or off)")
    if opts.batch_window_ns < 0:
        raise BlkfleetError("invalid batch window (--batch-window-us must be >= 0)")
    if not 0 <= opts.depth <= 65535:
        raise BlkfleetError(f"invalid queue depth {opts.depth} (1..65535)")


def resolve_targets(streams, map_files):
    mapping = {}
    for path in map_files:
        for k, v in parse_map(path).items():
            mapping.setdefault(k, v)
    targets = []
    for dev in dict.fromkeys(s.device for s in streams):
        targets.append(Target(dev, device_path(mapping.get(dev, dev))))
    return targets


def check_ios(plans, targets, opts):
    """Every IO must fit its target and be aligned to its logical block size; writes need a safe target."""
    for plan in plans:
        for t_index, target in enumerate(targets):
            bad = 0
            first = None
            size, lbs = target.size, target.block_size
            for tgt, off, n, op in zip(plan.target, plan.offset, plan.nbytes, plan.ops):
                if tgt != t_index or op == FLUSH:
                    continue
                if off % lbs or n % lbs or off + n > size:
                    bad += 1
                    first = first or (off, n)
            if bad:
                raise BlkfleetError(
                    f"{target.path}: {bad} IOs of {target.recorded} do not fit it (size {size} bytes, logical "
                    f"block size {lbs}); first: offset {first[0]} + {first[1]} bytes"
                )
    if opts.write_enable:
        planned = {op for p in plans for op in set(p.ops)}
        if planned & {WRITE, DISCARD, FLUSH, WRITE_ZEROES}:
            for target in targets:
                reason = target.refuse_writes_reason()
                if reason and not opts.force:
                    raise BlkfleetError(f"{target.path}: refusing to write: {reason} (use --force to write anyway)")


class _Channel:
    """Length-prefixed pickles over a pipe pair."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd

    def send(self, obj):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(struct.pack("Q", len(data)) + data)
        while view:
            view = view[os.write(self.wfd, view):]

    def recv(self):
        head = self._read(8)
        return pickle.loads(self._read(struct.unpack("Q", head)[0])) if head else None

    def _read(self, n):
        chunks = []
        while n:
            data = os.read(self.rfd, min(n, 1 << 20))
            if not data:
                return b""
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)


_stop = False


def _on_signal(signum, frame):
    global _stop
    _stop = True


def _worker_main(chan, plan, targets, opts, counters, index):
    """Body of a worker process; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        os.sched_setaffinity(0, {plan.cpu_pinned})
        worker.set_timer_slack()
        fds = [t.open(opts.write_enable) for t in targets]
        replayer = worker.Replayer(plan, fds, opts)
        chan.send(("ready", None))
        while True:
            msg = chan.recv()
            if not msg or msg[0] != "go":
                break

            def progress(done, _i=index):
                struct.pack_into("Q", counters, 8 * _i, done)

            out = replayer.run(msg[1], lambda: _stop, progress)
            chan.send(("done", out))
            if out.interrupted:
                break
        replayer.close()
    except BaseException as e:  # reported to the parent, which prints one line
        try:
            chan.send(("error", f"{type(e).__name__}: {e}" if not isinstance(e, BlkfleetError) else str(e)))
        except OSError:
            pass
        code = 2
    finally:
        os._exit(code)


class _Worker:
    def __init__(self, plan, targets, opts, counters, index):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(to_child_w)
            os.close(from_child_r)
            _worker_main(_Channel(to_child_r, from_child_w), plan, targets, opts, counters, index)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = pid
        self.plan = plan
        self.chan = _Channel(from_child_r, to_child_w)
        self.status = None

    def describe_death(self):
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return "vanished"
            if not pid:
                return None
            self.status = status
        if os.WIFSIGNALED(self.status):
            return f"killed by signal {os.WTERMSIG(self.status)}"
        return f"exited with status {os.WEXITSTATUS(self.status)}"


def _collect(workers, expect, deadline=None):
    """One message of kind ``expect`` from every worker; raises BlkfleetError on an error or a death."""
    got = {}
    pending = {w.chan.rfd: w for w in workers}
    stop_sent = False
    while pending:
        if _stop and not stop_sent:
            for w in pending.values():
                _kill(w.pid, signal.SIGTERM)
            stop_sent = True
            deadline = time.monotonic() + STOP_GRACE_S
        if deadline and time.monotonic() > deadline:
            for w in pending.values():
                _kill(w.pid, signal.SIGKILL)
            raise BlkfleetError(f"{len(pending)} worker(s) did not answer in time and were killed")
        try:
            ready, _, _ = select.select(list(pending), [], [], 0.2)
        except InterruptedError:
            continue
        for fd in ready:
            w = pending.pop(fd)
            msg = w.chan.recv()
            if msg is None:
                raise BlkfleetError(f"replay worker for CPU {w.plan.cpu_pinned} (pid {w.pid}) died: "
                                    f"{w.describe_death() or 'closed its pipe'}")
            if msg[0] == "error":
                raise BlkfleetError(f"replay worker for CPU {w.plan.cpu_pinned}: {msg[1]}")
            got[w.pid] = msg[1]
        for w in list(pending.values()):
            death = w.describe_death()
            if death:
                raise BlkfleetError(f"replay worker for CPU {w.plan.cpu_pinned} (pid {w.pid}) died: {death}")
    return [got[w.pid] for w in workers]


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _realtime(wanted, nworkers, ncpus, no_stall):
    """Whether workers run as SCHED_FIFO: ``auto`` when timing matters (not ``-N``), it is allowed, and a CPU is
    left to the kernel's IO work."""
    if wanted in (False, "off"):
        return False
    if wanted in (True, "on"):
        if not realtime.allowed():
            raise BlkfleetError("--realtime on: this process may not use SCHED_FIFO (needs root or CAP_SYS_NICE)")
        return True
    return not no_stall and nworkers < ncpus and realtime.allowed()


def _start_instant(opts):
    now = time.monotonic_ns()
    if opts.start_at is None:
        return now + START_DELAY_NS
    delay = int((opts.start_at - time.time()) * 1e9)
    if delay < 0:
        print(f"blkfleet: start time is {-delay / 1e9:.3f} s in the past: starting now", file=sys.stderr)
    return now + max(delay, START_DELAY_NS // 10)


def replay(opts):
    """Run a replay; returns (results document, exit code)."""
    global _stop
    _stop = False
    validate(opts)
    streams = load_streams(opts.input_dir, opts.devices, opts.base, opts.find)
    opts.formats = {s.format for s in streams}
    targets = resolve_targets(streams, opts.map_files)
    target_of = {t.recorded: i for i, t in enumerate(targets)}
    cpus = _cpus()
    # Default: one worker per recorded CPU, but leave one CPU to the kernel's IO work (loop workers, IRQs,
    # completions): spinning workers on every CPU of a small machine delay the IOs themselves (measured on
    # 2 vCPUs: issue-time p50 612 us with two workers against 423 us with one; see docs/replay.md).
    nworkers = opts.cpus or min(len({s.cpu for s in streams}), max(1, len(cpus) - 1))
    plans, _genesis = make_plans(streams, nworkers, opts.acc, target_of)
    for plan in plans:
        plan.cpu_pinned = cpus[plan.cpu % len(cpus)]
    check_ios(plans, targets, opts)
    if not opts.depth:
        # More IOs in flight than the device queue holds would block io_submit until a request frees: the
        # worker would stall and every IO behind it be late (measured: bursty trace, issue-time p99 4.2 ms
        # with 512 on a loop device whose queue holds 128, 1.8 ms with 128).
        opts.depth = min([512] + [t.queue_depth for t in targets if t.queue_depth])
    opts.realtime = _realtime(opts.realtime, len(plans), len(cpus), opts.no_stall)
    probe = open_engine(opts.engine, 1)
    opts.engine_name = probe.name
    opts.engine = probe.name
    probe.close()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    counters = mmap.mmap(-1, 8 * len(plans))
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = []
    runs = []
    interrupted = False
    try:
        workers = [_Worker(p, targets, opts, counters, i) for i, p in enumerate(plans)]
        _collect(workers, "ready", time.monotonic() + 60)
        total = sum(len(p) for p in plans)
        for _it in range(opts.iterations):
            if _stop:
                interrupted = True
                break
            start = _start_instant(opts) if not runs else time.monotonic_ns() + START_DELAY_NS
            for w in workers:
                w.chan.send(("go", start))
            outs = _wait_iteration(workers, counters, total)
            runs.append(list(zip(plans, outs)))
            if any(o.interrupted for o in outs):
                interrupted = True
                break
        for w in workers:
            try:
                w.chan.send(("exit", None))
            except OSError:
                pass
    finally:
        for w in workers:
            try:
                os.waitpid(w.pid, 0) if w.status is None else None
            except ChildProcessError:
                pass
        for s, handler in old.items():
            signal.signal(s, handler)
    doc = results.build(runs, targets, opts, started, interrupted or _stop)
    code = 0
    if doc["total"]["errors"]["count"]:
        code = 3
    if doc["interrupted"]:
        code = 130
    return doc, code


def _wait_iteration(workers, counters, total):
    """Collect one iteration's outcomes, showing progress on a terminal."""
    if not sys.stderr.isatty():
        return _collect(workers, "done")
    import threading

    finished = threading.Event()

    def show():
        while not finished.wait(0.5):
            done = sum(struct.unpack_from("Q", counters, 8 * i)[0] for i in range(len(workers)))
            sys.stderr.write(f"\rreplaying: {done}/{total} IOs ({100 * done / max(total, 1):.0f} %)")
            sys.stderr.flush()

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        return _collect(workers, "done")
    finally:
        finished.set()
        thread.join()
        sys.stderr.write("\r" + " " * 60 + "\r")


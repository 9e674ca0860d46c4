"""``blkfleet replay``: check everything, start pinned worker processes at one instant, feed them while they
replay, collect results as they go.

Workers are processes (no shared interpreter lock), one per worker slot, each pinned with sched_setaffinity,
each using the target descriptors the parent opened and checked. Each has a look-ahead window in shared memory
(``window.py``) that the parent keeps filled from the replay files (``feed.py``) and whose completions it folds
into the results as they come (``collect.py``): memory and start-up time do not grow with the trace.

Phases: prepare (files opened, targets checked, worker count chosen, windows filled with the first IOs,
workers forked and pinned) -> every worker reports "ready" -> one start instant -> "go at T" to each, then per
iteration "done" back with its outcome. While they run, the parent loops every ``TICK_S``: signals, lease and
workers first, then the feeder and the collector (in timed mode, their work waits for a pause in the trace
while the windows can afford it: ``pauses.py``). SIGINT/SIGTERM (or an expired lease) stop every worker within
a second; partial results are still written. A worker that dies or fails makes the parent stop the others at
once (it keeps reading every pipe meanwhile, so none blocks on a full one); the results are marked failed.
Workers die with the parent (PR_SET_PDEATHSIG): none issues an IO once it is gone.
"""

import datetime
import os
import pickle
import select
import signal
import stat
import struct
import sys
import time
from contextlib import contextmanager

from ..codes import BAD_INPUT as EXIT_BAD_INPUT
from ..codes import CONTROLLER_GONE as EXIT_LEASE
from ..codes import INTERRUPTED as EXIT_INTERRUPTED
from ..codes import IO_ERRORS as EXIT_IO_ERRORS
from ..codes import SUCCESS as EXIT_OK
from ..codes import WORKER_FAILED as EXIT_FAILED
from ..errors import BlkfleetError
from ..files import trusted_dir
from ..names import check_name
from ..process import end_with_parent
from ..replayfile.ops import DISCARD, FLUSH, WRITE, WRITE_ZEROES
from ..results import document as results
from ..results.iolog import IOLogWriter
from . import realtime, sizing, worker
from .collect import Collector
from .feed import SHARE_IOS, Feeder, Lane, genesis_of, open_sources
from .ioengines import open_ioengine
from .pauses import Pauses
from .target import Target, device_path, parse_map
from .window import (
    BATCHED,
    ISSUED,
    LOG_FULL,
    MAX_WINDOW_IOS,
    MIN_WINDOW_IOS,
    STALL_NS,
    STALLS,
    THINK_OFFSET,
    WINDOW_IOS,
    WINDOW_NS,
    Window,
)

START_DELAY_NS = 50_000_000
STOP_GRACE_S = 2.0  # after a stop, a worker has this long (its IOs in flight: at most 1 s) to report
READY_TIMEOUT_S = 60.0
POLL_S = 0.1  # the parent looks at signals, its lease and its workers at least this often
TICK_S = 0.01  # while workers run: and feeds their windows and collects their completions this often
PRIME_IOS = 65536  # IOs written into each window before the start (the rest while the replay runs)
SHARE_ROUNDS = 64  # a tick folds at most this many more pieces of SHARE_IOS completions per window
MODES = ("timed", "load", "dependency")  # load and dependency: the IOs' moments come from completions (ordered)


class ReplayOptions:
    """The options of a replay (keyword arguments; see ``DEFAULTS``)."""

    DEFAULTS = {
        "input_dir": ".", "devices": (), "find": False, "base": "replay",
        "cpus": 0,  # -c: workers; 0: chosen from the trace (sizing.py)
        "iterations": 1, "map_files": (), "no_stall": False, "verbose": 0, "write_enable": False, "acc": 1.0,
        "json": None,
        "start_at": None,  # wall-clock seconds since the epoch
        "ioengine": "aio",
        "depth": 0,  # 0: the targets' request queue size (at most 512)
        "force": False, "late_threshold_ns": 1_000_000,
        "batch_window_ns": None,  # None: chosen per 100 ms from the IOs' density (realtime.AUTO_BATCH_NS); 0: off
        "realtime": "auto",  # "auto", "on", "off"; resolved to a bool before the workers start
        "bundle_id": None,
        "source": None,  # what to name as the input in the results (the bundle file, else input_dir)
        "run_id": None,  # --run-id: the job this replay is
        "probe": "auto",  # how a write target's signatures are probed: auto, blkid or internal
        "io_log": None,  # --io-log: the per-IO log to write
        "window_ios": None,  # --window-ios: IOs a worker's window holds at most; None: from the trace's rate
        "may_write": None,  # the trace holds writes, discards, flushes or write-zeroes (None: not known)
        "start_ns": None,  # CLOCK_MONOTONIC start instant of the first iteration, once chosen
        "mode": "timed",  # --mode: timed, load or dependency (MODES)
    }

    def __init__(self, **options):
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"unknown replay options: {', '.join(sorted(unknown))}")
        self.__dict__.update(self.DEFAULTS, formats=set(), **options)

    @property
    def batch_auto(self):
        """Whether the workers choose the batch window from the IOs' density (timed mode, no window given)."""
        return self.batch_window_ns is None and self.mode == "timed" and not self.no_stall


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
    if opts.batch_window_ns is not None and opts.batch_window_ns < 0:
        raise BlkfleetError("invalid batch window (--batch-window-us must be >= 0)")
    if not 0 <= opts.depth <= 65535:
        raise BlkfleetError(f"invalid queue depth {opts.depth} (1..65535)")
    w = opts.window_ios
    if w is not None:
        if not (MIN_WINDOW_IOS <= w <= MAX_WINDOW_IOS and w & (w - 1) == 0):
            raise BlkfleetError(f"invalid window size {w} (--window-ios: a power of two, {MIN_WINDOW_IOS}.."
                                f"{MAX_WINDOW_IOS})")
        if opts.depth > w:
            raise BlkfleetError(f"--depth {opts.depth} is more than the window holds (--window-ios {w})")
    for dev in opts.devices:
        check_name(dev, "recorded device name")
    check_name(opts.base, "input base name")
    if opts.run_id is not None:
        check_name(opts.run_id, "run ID")
    if opts.mode not in MODES:
        raise BlkfleetError(f"unknown replay mode {opts.mode!r} ({', '.join(MODES)})")
    if opts.mode != "timed":
        if opts.no_stall:
            raise BlkfleetError(f"-N is a timed mode's option: --mode {opts.mode} sets its own pace")
        if opts.batch_window_ns:
            raise BlkfleetError(f"--batch-window-us does not apply to --mode {opts.mode}")
        if opts.cpus > 1:
            raise BlkfleetError(f"--mode {opts.mode} runs one worker (-c 1): the IOs of all recorded CPUs wait "
                                "on one another")


def check_input_dir(directory):
    """The replay files' directory (-d, or a bundle's extraction) must be one nobody but root (or us) can change
    (``files.trusted_dir``), as the one ``record`` writes them into: another user who could swap a file in it, or a
    link on the way, would choose what -W writes. Checked before any file is opened or any target touched."""
    try:
        os.listdir(directory)  # a missing or unreadable directory is named as such, not as untrusted
    except OSError as e:
        raise BlkfleetError(f"{directory}: cannot read directory: {e.strerror}") from None
    trusted_dir(directory, "input directory", create=False)


def read_maps(map_files):
    """The device maps merged (the first file that maps a device wins)."""
    mapping = {}
    for path in map_files:
        for k, v in parse_map(path).items():
            mapping.setdefault(k, v)
    return mapping


def resolve_targets(sources, mapping, opts):
    """One Target per recorded device, each opened once (closed again if a later one fails)."""
    targets = []
    try:
        for dev in dict.fromkeys(s.device for s in sources):
            check_name(dev, "recorded device name")
            path = device_path(mapping.get(dev, dev))
            same = [t for t in targets if t.fd is not None and _rdev(path) == t.rdev]
            if same:
                targets.append(same[0].alias(dev, path))
            else:
                targets.append(Target(dev, path, opts.write_enable, opts.run_id))
    except BaseException:
        close_targets(targets)
        raise
    return targets


def _rdev(path):
    """The device number of a block device at ``path``, else None (Target then says what is wrong)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def close_targets(targets):
    for t in targets:
        t.close()


def check_writes(targets, opts):
    """With -W, a trace that may write needs every target safe to write (or --force)."""
    if opts.write_enable and opts.may_write is not False:
        for target in targets:
            reason = target.refuse_writes_reason(opts.probe)
            if reason and not opts.force:
                raise BlkfleetError(f"{target.path}: refusing to write: {reason} (use --force to write anyway)",
                                    code="target_refused")


def may_write(sources):
    """Whether the sources hold writes, discards, flushes or write-zeroes: False or True when every source was
    read to its end before the start (a short trace), else None (not known: the targets are checked)."""
    if not all(s.eof for s in sources):
        return None
    kinds = set()
    for s in sources:
        kinds.update(s.ops[s.pos:])
    return bool(kinds & {WRITE, DISCARD, FLUSH, WRITE_ZEROES})


class _Channel:
    """Length-prefixed pickles over a pipe pair. The parent reads without blocking (``feed``), so that it keeps
    every worker's pipe drained while it waits on all of them; a worker reads with ``recv``."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self._buf = bytearray()

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

    def feed(self):
        """Read what the pipe holds now: (complete messages, True once the writer closed it)."""
        msgs, eof = [], False
        try:
            while True:
                data = os.read(self.rfd, 1 << 20)
                if not data:
                    eof = True
                    break
                self._buf += data
        except BlockingIOError:
            pass
        while len(self._buf) >= 8:
            size = struct.unpack_from("Q", self._buf)[0]
            if len(self._buf) < 8 + size:
                break
            msgs.append(pickle.loads(bytes(self._buf[8:8 + size])))
            del self._buf[:8 + size]
        return msgs, eof


_stop = None  # the number of the signal that asked the replay to stop, once one did
_raising = False  # True until the workers start: a signal then raises Stopped
_active = False  # stop_signals() is in force


class Stopped(BlkfleetError):
    """SIGINT or SIGTERM before the workers started: nothing was replayed."""

    code = "interrupted"


def _on_signal(signum, frame):
    global _stop
    _stop = signum
    if _raising:
        raise Stopped(f"stopped by {_signal_name(signum)} before the replay started")


@contextmanager
def stop_signals():
    """SIGINT and SIGTERM while the replay command runs: until the workers start they raise Stopped (a long
    load still ends at once); from then on they set the stop flag (the workers stop within a second, partial
    results are built and written) up to the end of the block."""
    global _stop, _raising, _active
    if _active:
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    _stop, _raising, _active = None, True, True
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _raising = _active = False


def _set_pdeathsig(parent):
    """Die with the parent (SIGKILL): a worker never issues an IO once its parent is gone."""
    if not end_with_parent(parent, signal.SIGKILL):
        os._exit(EXIT_FAILED)


def _worker_main(chan, lane, probe, opts, prefault):
    """Body of a worker process; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        os.sched_setaffinity(0, {lane.cpu})
        worker.set_timer_slack()
        replayer = worker.Replayer(lane.window, probe, opts, prefault)  # the parent's descriptors, never reopened
        chan.send(("ready", None))
        while True:
            msg = chan.recv()
            if not msg or msg[0] != "go":
                break
            out = replayer.run(msg[1], lambda: _stop is not None)
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
    """A worker process seen from the parent: @pid, @lane, @chan (non-blocking reads), @status (waitpid
    status once reaped), @done (it sent what the current phase waits for, or failed), @failed (why it failed)."""

    def __init__(self, lane, probe, opts, prefault, others):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _set_pdeathsig(parent)
            for w in others:  # the parent's ends of the earlier workers' pipes
                os.close(w.chan.rfd)
                os.close(w.chan.wfd)
            os.close(to_child_w)
            os.close(from_child_r)
            _worker_main(_Channel(to_child_r, from_child_w), lane, probe, opts, prefault)
        os.close(to_child_r)
        os.close(from_child_w)
        os.set_blocking(from_child_r, False)
        self.pid = pid
        self.lane = lane
        self.chan = _Channel(from_child_r, to_child_w)
        self.status = None
        self.done = False
        self.failed = None

    def name(self):
        return f"replay worker for CPU {self.lane.cpu} (pid {self.pid})"

    def reap(self, timeout=0.0):
        """The waitpid status once the process ended (reaps it), else None; waits at most ``timeout`` s (a
        process that exits with IOs in flight waits for them in the kernel, and a hung device never ends them)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.status = status
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.01)
        return self.status

    def death(self):
        status = self.reap(STOP_GRACE_S)
        if status is None:
            return "closed its pipe and does not end"
        if os.WIFSIGNALED(status):
            return f"killed by {_signal_name(os.WTERMSIG(status))}"
        return f"exited with status {os.WEXITSTATUS(status)}"

    def signal(self, sig):
        if self.status is None:
            _kill(self.pid, sig)

    def close(self):
        for fd in (self.chan.rfd, self.chan.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _Supervisor:
    """The parent's side of a replay: waits on every worker at once, and stops them all on a signal, an
    expired lease (``lease``: callable, True once expired) or the failure of one of them.

    @stop_reason: why the replay was stopped early ("SIGINT", "SIGTERM", "lease expired", or the failure),
    @failure: the one line naming the worker that died or failed, @stop_sent: when the others were told to
    stop (monotonic seconds), after which they get STOP_GRACE_S before SIGKILL."""

    def __init__(self, workers, lease=None):
        self.workers = workers
        self.lease = lease
        self.stop_reason = None
        self.failure = None
        self.input_error = None  # bad input found after the start (exit 2)
        self.stop_sent = None

    def _stop_all(self, reason):
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.stop_sent is None:
            self.stop_sent = time.monotonic()
            for w in self.workers:
                if not w.done:
                    w.signal(signal.SIGTERM)

    def _fail(self, w, problem):
        w.failed = problem
        w.done = True
        if self.failure is None:
            self.failure = f"{w.name()} {problem}"
        self._stop_all(self.failure)

    def collect(self, expect, timeout=None, tick=None):
        """One ``expect`` message from every worker: {pid: payload}; a worker that died, failed or did not
        answer in time is left out (``failure`` says which). Returns within STOP_GRACE_S of a stop. ``tick``:
        called every TICK_S meanwhile (feeding and collecting); a BlkfleetError it raises stops the replay
        (``input_error``)."""
        got = {}
        for w in self.workers:
            w.done = w.failed is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = [w for w in self.workers if not w.done]
            if not pending:
                return got
            if _stop is not None:
                self._stop_all(_signal_name(_stop))
            if self.lease is not None and self.lease():
                self._stop_all("lease expired")
            now = time.monotonic()
            if self.stop_sent is not None and now > self.stop_sent + STOP_GRACE_S:
                for w in pending:
                    w.signal(signal.SIGKILL)
                    self._fail(w, f"did not stop within {STOP_GRACE_S:g} s and was killed")
                continue
            if deadline is not None and now > deadline:
                for w in pending:
                    w.signal(signal.SIGKILL)
                    self._fail(w, f"did not answer within {timeout:g} s and was killed")
                continue
            if tick is not None:
                try:
                    tick()
                except BlkfleetError as e:
                    tick = None
                    self.input_error = str(e)
                    self._stop_all(self.input_error)
            try:
                ready, _, _ = select.select([w.chan.rfd for w in pending], [], [], POLL_S if tick is None else TICK_S)
            except InterruptedError:
                continue
            for w in pending:
                if w.chan.rfd not in ready:
                    continue
                msgs, eof = w.chan.feed()
                for kind, payload in msgs:
                    if kind == "error":
                        self._fail(w, f"failed: {payload}")
                    elif kind == expect and not w.done:
                        got[w.pid] = payload
                        w.done = True
                if eof and not w.done:
                    self._fail(w, f"died: {w.death()}")

    def finish(self):
        """Tell every worker to exit and reap them all, SIGKILL after STOP_GRACE_S: never blocks longer."""
        for w in self.workers:
            try:
                w.chan.send(("exit", None))
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        while any(w.reap() is None for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        for w in self.workers:
            if w.reap() is None:
                w.signal(signal.SIGKILL)
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers:
            if w.reap(max(deadline - time.monotonic(), 0)) is None:
                print(f"blkfleet: {w.name()} does not end even after SIGKILL (IOs stuck in the kernel?): left "
                      "behind", file=sys.stderr)
            w.close()


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


def replay(opts, lease=None, armed=None):
    """Run a replay; returns (results document, exit code). ``lease``: callable, True once the run's lease
    expired (the replay then stops as on SIGTERM). ``armed``: the two-phase start (replay/job.py), called once
    every worker is ready, returns the start instant (epoch seconds)."""
    with stop_signals():
        return _replay(opts, lease, armed)


def _replay(opts, lease, armed):
    validate(opts)
    check_input_dir(opts.input_dir)
    mapping = read_maps(opts.map_files)
    sources = open_sources(opts.input_dir, opts.devices, opts.base, opts.find, timing=opts.mode != "timed")
    try:
        opts.formats = {s.format for s in sources}
        targets = resolve_targets(sources, mapping, opts)
        try:
            return _replay_onto(opts, lease, sources, targets, armed)
        finally:
            close_targets(targets)
    finally:
        for s in sources:
            s.close()


def _replay_onto(opts, lease, sources, targets, armed):
    target_of = {t.recorded: i for i, t in enumerate(targets)}
    for s in sources:
        s.target = target_of[s.device]
    ordered = opts.mode != "timed"
    if ordered:
        bare = [s.path for s in sources if not s.timed]
        if bare:
            raise BlkfleetError(f"{bare[0]}: no recorded timing (a version 1 or btrecord replay file): --mode "
                                f"{opts.mode} needs files that 'blkfleet record --timing' made from a capture with "
                                "completions (docs/formats.md, version 2)")
        opts.cpus = 1  # every IO waits on IOs of any recorded CPU: one worker sees them all
    cpus = _cpus()
    genesis = genesis_of(sources)
    if not opts.cpus and not opts.no_stall:
        sizing.read_ahead(sources, genesis, opts.acc)
    if not opts.depth:
        # More IOs in flight than the device queue holds would block io_submit until a request frees: the
        # worker would stall and every IO behind it be late (measured: bursty trace, issue-time p99 4.2 ms
        # with 512 on a loop device whose queue holds 128, 1.8 ms with 128).
        opts.depth = min([512, opts.window_ios or WINDOW_IOS] + [t.queue_depth for t in targets if t.queue_depth])
    probe = open_ioengine(opts.ioengine, 1)
    opts.ioengine = probe.name
    probe.close()
    cost = None
    if not opts.cpus and not opts.no_stall:
        first = targets[sources[0].target]
        cost = sizing.calibrate(first.descriptor, first.size, opts)
    nworkers, sizing_info = sizing.choose(sources, len(cpus), genesis, opts, cost)
    if opts.window_ios is None:
        opts.window_ios = sizing.window_ios(sizing_info.get("peak_iops"))
    by_slot = {}
    for s in sources:
        by_slot.setdefault(s.cpu % nworkers, []).append(s)
    lanes = []
    try:
        for slot, group in sorted(by_slot.items()):
            lane = Lane(slot, group, Window(opts.window_ios, ordered=ordered))
            lane.cpu = cpus[slot % len(cpus)]
            lanes.append(lane)
        opts.may_write = may_write(sources)
        check_writes(targets, opts)
        opts.realtime = _realtime(opts.realtime, len(lanes), len(cpus), opts.no_stall)
        return _run_lanes(opts, lease, lanes, targets, genesis, sizing_info, armed)
    finally:
        for lane in lanes:
            lane.window.close()


def _run_lanes(opts, lease, lanes, targets, genesis, sizing_info, armed):
    global _raising
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    feeder = Feeder(lanes, genesis, opts.acc, targets, opts.write_enable, opts.no_stall, opts.mode)
    feeder.start_iteration(first=True)
    _raising = False
    workers = []
    sup = _Supervisor(workers, lease)
    outcomes = []  # per iteration: {slot: worker.Outcome}
    iolog = collector = cpu_start = parent_cpu_s = None
    try:
        # Workers first (forked from a parent that holds little: their memory is its memory), setting up
        # while the parent fills their windows with the first IOs (checked: bad input ends here, nothing
        # replayed).
        prefault = _largest(lanes, opts)
        for lane in lanes:
            fd = targets[lane.sources[0].target].descriptor
            probe = (fd, os.lseek(fd, 0, os.SEEK_END))
            workers.append(_Worker(lane, probe, opts, prefault, workers))
        feeder.pump(0, min(opts.window_ios, PRIME_IOS))
        if opts.io_log:
            iolog = IOLogWriter(opts.io_log, [(t.recorded, t.path) for t in targets], 0, 0)
        collector = Collector([lane.window for lane in lanes], targets, opts.late_threshold_ns, iolog,
                              never_early=not opts.no_stall and (opts.batch_window_ns == 0 or opts.mode != "timed"))
        sup.collect("ready", READY_TIMEOUT_S)
        if sup.failure:
            raise BlkfleetError(sup.failure)
        if armed is not None:  # two-phase start: report armed, wait for the instant the controller picks
            opts.start_at = armed(lambda: _stop)
        _keep_off_workers(lanes)
        cpu_start = time.process_time()
        for it in range(opts.iterations):
            if lease is not None and lease():
                sup.stop_reason = sup.stop_reason or "lease expired"
            if sup.stop_reason or _stop is not None:
                break
            if it:
                feeder.start_iteration(first=False)
                feeder.pump(0, min(opts.window_ios, PRIME_IOS))
            start = _start_instant(opts) if not it else time.monotonic_ns() + START_DELAY_NS
            if not it:
                opts.start_ns = start
                if iolog is not None:
                    iolog.set_start(start, time.time_ns() + start - time.monotonic_ns())
            collector.begin(it + 1, start)
            for w in workers:
                w.chan.send(("go", start))
            got = _wait_iteration(sup, feeder, collector, start)
            outs = {w.lane.slot: got.get(w.pid) for w in workers}
            outcomes.append(outs)
            collector.poll()
            for lane in lanes:
                collector.skipped(lane.skipped)
            for out in outs.values():
                if out is not None:
                    collector.lose(out.inflight)
            if sup.stop_reason or any(o is None or o.interrupted for o in outs.values()):
                break
    finally:
        sup.finish()
        if collector is not None:
            collector.poll()
            parent_cpu_s = time.process_time() - cpu_start if cpu_start is not None else None
        if iolog is not None:
            iolog.close()
    if _stop is not None and sup.stop_reason is None:
        sup.stop_reason = _signal_name(_stop)
    interrupted = bool(sup.stop_reason) or any(o is None or o.interrupted for outs in outcomes
                                               for o in outs.values())
    run = results.Run(collector=collector, targets=targets, lanes=lanes, outcomes=outcomes, opts=opts,
                      started=started, sizing=sizing_info, workers=worker_figures(
                          workers, opts.mode == "dependency", opts.batch_auto),
                      feeder=feeder, window=_window_info(lanes), iolog=iolog, parent_cpu_s=parent_cpu_s)
    doc = results.build(run, interrupted, sup.stop_reason, _failed(sup))
    return doc, exit_code(doc)


def _largest(lanes, opts):
    """(read, write) bytes of IO memory each worker touches before the start: the largest read (and, with -W,
    write) of what was read ahead."""
    read = 0
    for lane in lanes:
        for s in lane.sources:
            if len(s):
                read = max(read, max(s.nbytes[s.pos:]))
    return read, (read if opts.write_enable else 0)


def _keep_off_workers(lanes):
    """Run the parent (feeder and collector) on the CPUs no worker is pinned to, if there are any: it would
    otherwise take turns with a worker on its CPU. And as SCHED_BATCH: its work only has to keep the windows
    ahead (they hold up to 2 s), so it does not preempt, on waking, the kernel threads that finish the workers'
    IOs on the same CPU."""
    free = set(_cpus()) - {lane.cpu for lane in lanes}
    if free:
        os.sched_setaffinity(0, free)
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _window_info(lanes):
    return {"ios": lanes[0].window.capacity, "seconds": WINDOW_NS / 1e9, "bytes": lanes[0].window.size_bytes}


def worker_figures(workers, dependency=False, batched=False):
    """Per worker: slot, CPU, streams, IOs submitted, and what its window counted (in dependency mode also what
    it took off each think time; with the automatic batch window, the windows it batched in)."""
    out = []
    for w in workers:
        ctl = w.lane.window.control
        out.append({"slot": w.lane.slot, "cpu": w.lane.cpu, "streams": w.lane.streams, "ios": ctl[ISSUED],
                    "stalls": ctl[STALLS], "stall_s": round(ctl[STALL_NS] / 1e9, 6), "log_full": ctl[LOG_FULL]})
        if dependency:
            out[-1]["think_offset_us"] = round(ctl[THINK_OFFSET] / 1e3, 3)
        elif batched:
            out[-1]["batched_windows"] = ctl[BATCHED]
    return out


def _failed(sup):
    if not sup.failure and not sup.input_error:
        return None
    bad = [w for w in sup.workers if w.failed]
    return {"reason": sup.input_error or sup.failure, "bad_input": bool(sup.input_error),
            "workers": [{"cpu": w.lane.cpu, "pid": w.pid, "problem": w.failed} for w in bad]}


def exit_code(doc):
    """EXIT_BAD_INPUT (found after the start), EXIT_FAILED (a worker died or failed) before EXIT_LEASE,
    EXIT_INTERRUPTED, EXIT_IO_ERRORS, EXIT_OK."""
    if doc.get("failed"):
        return EXIT_BAD_INPUT if doc["failed"].get("bad_input") else EXIT_FAILED
    if doc.get("stop_reason") == "lease expired":
        return EXIT_LEASE
    if doc["interrupted"]:
        return EXIT_INTERRUPTED
    if doc["total"]["errors"]["count"]:
        return EXIT_IO_ERRORS
    return EXIT_OK


def _wait_iteration(sup, feeder, collector, start_ns):
    """Collect one iteration's outcomes, feeding the windows and folding completions meanwhile; a progress line
    on a terminal."""
    tty = sys.stderr.isatty()
    shown = [time.monotonic()]
    pauses = Pauses(feeder.lanes, timed=not feeder.no_stall and feeder.mode == "timed")

    def tick():
        now = time.monotonic_ns() - start_ns
        if pauses.defer(now):
            return
        feeder.pump(now)
        collector.poll(SHARE_IOS)
        for _ in range(SHARE_ROUNDS):  # the rest a piece at a time, offering the CPU between them (feed.py)
            if not collector.backlog():
                break
            os.sched_yield()
            collector.poll(SHARE_IOS)
        if tty and time.monotonic() - shown[0] >= 0.5:
            shown[0] = time.monotonic()
            sys.stderr.write(f"\rreplaying: {collector.folded} IOs done")
            sys.stderr.flush()

    try:
        return sup.collect("done", tick=tick)
    finally:
        if tty:
            sys.stderr.write("\r" + " " * 60 + "\r")

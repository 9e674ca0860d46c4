"""``blkfleet replay``: its command-line interface (btreplay's flags and more)."""

import os
import sys
import tempfile

from .. import codes, protocol
from ..cliargs import add_acc_factor, positive_float
from ..errors import BlkfleetError
from ..files import absolute, work_dir
from ..jsonout import files, write_json
from ..results.document import stamp, summary_lines
from .ioengines import IOENGINES
from .job import RunDir, check_run_id, parse_instant, prune
from .run import EXIT_INTERRUPTED, MODES, ReplayOptions, replay, stop_signals
from .signatures import METHODS
from .sizing import WINDOW_IOS_HIGH
from .window import WINDOW_IOS, WINDOW_NS, size_of


def add_parser(sub):
    p = sub.add_parser(
        "replay",
        help="replay recorded IO (btreplay's flags): per-CPU, timed, direct IO",
        description="Replay btrecord or blkfleet replay files onto block devices with per-CPU pinned workers, "
        "each IO at its recorded time. Reads always; writes only with -W (otherwise recorded writes are read "
        "back from the same extents, and discards/flushes are skipped).",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT, codes.IO_ERRORS, codes.CONTROLLER_GONE,
                            codes.WORKER_FAILED, codes.INTERRUPTED),
    )
    p.add_argument("devices", nargs="*", metavar="DEV", help="recorded device names (e.g. sda)")
    p.add_argument("-c", "--cpus", type=int, default=0, metavar="N",
                   help="map the recorded CPU streams onto N workers (default: one per recorded CPU, up to the "
                   "CPUs available less one, left to the kernel's IO work; more, up to every CPU, when the "
                   "trace's peak rate needs them)")
    p.add_argument("-d", "--input-directory", default=".", metavar="DIR",
                   help="directory of the replay files (default .): one nobody but root can change, nor a directory "
                   "above it or a link on the way (a sticky one such as /tmp itself is refused)")
    p.add_argument("-F", "--find-records", action="store_true", help="replay every device found in -d")
    p.add_argument("-i", "--input-base", default="replay", metavar="BASE")
    p.add_argument("-I", "--iterations", type=int, default=1, metavar="N")
    p.add_argument("-M", "--map-devs", action="append", default=[], metavar="FILE",
                   help="device map file: 'FROM TO' lines (TO: a name under /dev or an absolute path)")
    p.add_argument("-N", "--no-stalls", action="store_true", help="issue as fast as possible, in order")
    p.add_argument("--mode", choices=MODES, default="timed",
                   help="timed (default): each IO at its recorded time (with -N: as fast as possible); load: each "
                   "IO in trace order once fewer IOs are in flight than when it was recorded; dependency: each IO "
                   "once the IOs it depended on completed, plus its recorded think time (÷ -x). load and dependency "
                   "need replay files with recorded timing (blkfleet record of a capture with completions) and "
                   "run one worker")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-W", "--write-enable", action="store_true", help="really write (and discard, flush)")
    add_acc_factor(p, "replay X times faster (any positive number)")
    p.add_argument("--bundle", metavar="FILE",
                   help="replay a bundle (verified and extracted to a temporary directory; -d, -i, -F do not apply; "
                   "devices default to the bundle's)")
    protocol.json_option(p, "the results JSON")
    p.add_argument("--start-at", type=lambda text: parse_instant(text, "--start-at"), metavar="TIME",
                   help="wall-clock start shared by several hosts (epoch seconds or ISO 8601)")
    p.add_argument("--ioengine", "--backend", dest="ioengine", choices=("auto",) + IOENGINES, default="aio",
                   help="IO engine (default aio; --backend is the older name)")
    p.add_argument("--window-ios", type=int, default=None, metavar="N",
                   help=f"IOs read ahead per worker at most (a power of two; default {WINDOW_IOS}, "
                   f"{size_of(WINDOW_IOS) / (1 << 20):.1f} MiB of shared memory, or up to {WINDOW_IOS_HIGH} "
                   f"for a trace whose peak rate needs it; never more than {WINDOW_NS // 1_000_000_000} s ahead)")
    p.add_argument("--io-log", metavar="FILE",
                   help="write every IO's submit time, lateness, latency and result to FILE (a new file; binary, "
                   "docs/formats.md), read by 'blkfleet compare' and 'blkfleet report'")
    p.add_argument("--depth", type=int, default=0,
                   help="IOs in flight per worker at most (default: the targets' request queue size, at most 512)")
    p.add_argument("--force", action="store_true",
                   help="with -W, write even to a device that is mounted or holds a filesystem/partition table")
    p.add_argument("--batch-window-us", type=float, default=None, metavar="US",
                   help="IOs due within this window of the one being submitted go out with it, at most this early "
                   "(0: each IO at its time; default: 40 while the IOs come less than 10 us apart on average, "
                   "else 0)")
    p.add_argument("--realtime", choices=("auto", "on", "off"), default="auto",
                   help="run workers as SCHED_FIFO while they are not busy all the time (nor their IOs due "
                   "less than 10 us apart), so kernel threads finishing IO do not preempt them (default auto: "
                   "in timed mode, when allowed and a CPU is left to the kernel)")
    p.add_argument("--probe", choices=METHODS, default="auto",
                   help="how a write target is probed for filesystems and other signatures (-W): blkid -p when "
                   "installed, else blkfleet's own table read with O_DIRECT (default auto)")
    p.add_argument("--run-id", metavar="ID",
                   help="job control: keep /run/blkfleet/replay/ID (run.json, lease) for 'blkfleet job'; a second "
                   "start with the ID of a live run fails")
    p.add_argument("--lease", type=positive_float, metavar="SEC",
                   help="with --run-id: stop (as SIGTERM would, exit 4) when the lease was not renewed "
                   "('blkfleet job renew ID') within SEC seconds (from the start, with --arm)")
    p.add_argument("--arm", type=positive_float, metavar="SEC",
                   help="with --run-id, the two-phase start of a fleet: read the files, check the targets, start the "
                   "workers and report 'armed' ('blkfleet job status ID'), then wait at most SEC seconds for the "
                   "start instant ('blkfleet job start ID --at TIME'); without one, end with nothing replayed "
                   "(exit 4)")
    p.add_argument("--late-threshold-us", type=float, default=1000.0, metavar="US",
                   help="an IO submitted more than this late counts as late (default 1000)")
    p.set_defaults(func=run)


def run(args):
    if args.lease is not None and args.run_id is None:
        raise BlkfleetError("--lease needs --run-id")
    if args.arm is not None and (args.run_id is None or args.start_at is not None):
        raise BlkfleetError("--arm needs --run-id, and no --start-at (the start instant comes with 'job start')")
    if args.run_id is None:
        prune()
        with stop_signals():
            return _run_input(args, None)
    check_run_id(args.run_id)
    with stop_signals():
        job = RunDir(args.run_id, args.lease, args.arm)
        code, results_path, reason = 2, None, None
        try:
            code, results_path, reason = _run_input(args, job)
            return code
        except BlkfleetError as e:
            code, reason = e.exit_code, str(e)
            raise
        except KeyboardInterrupt:
            code, reason = EXIT_INTERRUPTED, "SIGINT"
            raise
        except OSError as e:  # main() prints it as one line, exit 2
            reason = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
            raise
        finally:
            job.finish(code, results_path, reason)


def _run_input(args, job):
    if args.bundle:
        from ..bundle.pack import extract  # only here: it costs 35 ms and several MB to import

        with tempfile.TemporaryDirectory(prefix="blkfleet-bundle-") as tmp:
            manifest = extract(args.bundle, tmp)
            replay_info = manifest["replay"]
            args.input_directory = os.path.join(tmp, replay_info["directory"])
            args.input_base = replay_info["base"]
            args.devices = args.devices or replay_info["devices"]
            args.find_records = False
            return _run(args, job, manifest["bundle_id"], os.path.abspath(args.bundle))
    return _run(args, job, None, os.path.abspath(args.input_directory))


def _run(args, job, bundle_id, source):
    """Replay; with a job (``--run-id``) returns (exit code, results path or None, stop reason), else the code."""
    for output in files(args.json) + ([args.io_log] if args.io_log else []):
        work_dir(os.path.dirname(absolute(output)), "results directory", sticky_ok=True)
    opts = ReplayOptions(
        input_dir=args.input_directory, devices=tuple(args.devices), find=args.find_records,
        base=args.input_base, cpus=args.cpus, iterations=args.iterations, map_files=tuple(args.map_devs),
        no_stall=args.no_stalls, verbose=args.verbose, write_enable=args.write_enable, acc=args.acc_factor,
        json=(files(args.json) or [None])[0], start_at=args.start_at, ioengine=args.ioengine, depth=args.depth,
        force=args.force,
        late_threshold_ns=int(args.late_threshold_us * 1000), bundle_id=bundle_id, source=source,
        batch_window_ns=None if args.batch_window_us is None else int(args.batch_window_us * 1000),
        realtime=args.realtime,
        run_id=args.run_id, probe=args.probe, io_log=args.io_log, window_ios=args.window_ios, mode=args.mode,
    )
    doc, code = replay(opts, job.lease_expired if job else None, job.armed if job and args.arm else None)
    write_json(args.json, stamp(doc))
    results_path = os.path.abspath(files(args.json)[0]) if files(args.json) else None
    for line in summary_lines(doc):
        print(line, file=sys.stderr)
    if doc["failed"]:  # bad input found after the start (exit 2), or a worker that failed (exit 5)
        code = protocol.fail("invalid_input" if doc["failed"].get("bad_input") else "worker_failed",
                             doc["failed"]["reason"])
    elif doc["stop_reason"] == "lease expired":
        code = protocol.fail("lease_expired", f"run {args.run_id}: the lease expired (not renewed within "
                             f"{args.lease:g} s): stopped")
    elif code == EXIT_INTERRUPTED:
        code = protocol.fail("interrupted", f"stopped by {doc['stop_reason']}: partial results", echo=False)
    elif code:
        errors = doc["total"]["errors"]
        code = protocol.fail("io_errors", f"{errors['count']} IOs failed", echo=False, first=errors["first"])
    if job is None:
        return code
    return code, results_path, doc["stop_reason"]

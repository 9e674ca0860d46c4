"""``blkfleet capture start|stop|status|restore``: its command-line interface."""

from .. import codes, progress, protocol
from ..cliargs import positive_float, positive_int
from ..jsonout import show, write_json
from . import control, tracefs
from .ftrace import MODE_ALIASES, MODES


def add_parser(sub):
    p = sub.add_parser(
        "capture",
        help="start, stop and inspect a detached block-IO capture (blktrace, or ftrace: tracepoints or the blk tracer)",
        description="Capture the block IO of devices into DEV.blktrace.CPU files, as a background job that "
        "survives the shell (and SSH session) that started it.",
        epilog=codes.epilog(codes.SUCCESS, codes.EVENTS_DROPPED, codes.BAD_INPUT),
    )
    csub = p.add_subparsers(dest="capture_command", metavar="ACTION", parser_class=type(p))
    csub.required = True

    s = csub.add_parser("start", help="start a detached capture; prints one JSON line")
    s.add_argument("-d", "--device", action="append", required=True, metavar="DEV",
                   help="block device to trace (sda or /dev/sda); repeat for several")
    s.add_argument("-D", "--output-dir", required=True, metavar="DIR")
    s.add_argument("--backend", choices=control.BACKENDS, default="auto",
                   help="auto (default): blktrace, falling back to ftrace when the kernel refuses relay files")
    s.add_argument("-a", "--act-mask", default="queue", metavar="MASK",
                   help="event categories: names joined by ',' (queue, complete, ...), 'all', or a number; "
                   "default queue (Q/G/P/U events, all btrecord needs)")
    s.add_argument("-b", "--buffer-size", type=positive_int, default=512, metavar="KIB",
                   help="blktrace: sub-buffer size in KiB (default 512); ftrace: per-CPU ring buffer is "
                   "buffer-size x buffer-count KiB")
    s.add_argument("-n", "--buffer-count", type=positive_int, default=8, metavar="N",
                   help="blktrace: number of sub-buffers (default 8)")
    s.add_argument("-w", "--duration", type=positive_float, metavar="SEC", help="stop by itself after SEC s")
    s.add_argument("--mode", choices=("auto", *MODES, *MODE_ALIASES), default="auto",
                   help="ftrace: events (block_bio_queue tracepoint, Q only, cheapest) or raw (blk tracer's "
                   "per-CPU ring-buffer pages); auto (default): events for act_mask queue on whole devices, else "
                   "raw; pipe (the former trace_pipe mode) is taken as raw")
    s.add_argument("--interval", type=positive_float, default=0.05, metavar="SEC",
                   help="how often the buffers are emptied (default 0.05; sooner while they fill fast)")
    s.add_argument("--no-splice", dest="splice", action="store_false", default=None,
                   help="ftrace raw: copy pages with read/write instead of splice")
    s.add_argument("--keep-raw", action="store_true", help="ftrace raw: keep DIR/raw/cpuN after conversion")
    s.add_argument("--token", metavar="TOKEN",
                   help="run token recorded with the capture: a start with the same token is idempotent; one "
                   "that finds a capture of another token fails unless --force")
    s.add_argument("--force", action="store_true",
                   help="stop and discard a running capture of another token, or reuse a directory holding a "
                   "finished or dead capture")
    s.add_argument("--check", action="store_true",
                   help="change nothing: print what start would do (or fail as it would)")
    protocol.json_option(s, "the start document")
    s.set_defaults(func=run_start)

    t = csub.add_parser("stop", help="stop the capture in DIR; prints the JSON summary")
    t.add_argument("-D", "--output-dir", required=True, metavar="DIR")
    t.add_argument("--fail-on-drops", action="store_true", help="exit 1 when any event was dropped")
    t.add_argument("--timeout", type=positive_float, default=control.STOP_TIMEOUT, metavar="SEC",
                   help=f"how long to wait for the capture to finish writing (default {control.STOP_TIMEOUT:.0f})")
    protocol.json_option(t, "the summary (also printed on stdout)")
    t.add_argument("--token", metavar="TOKEN", help="stop only the capture of this run token (else exit 2)")
    t.add_argument("--check", action="store_true", help="change nothing: print what stop would do")
    t.set_defaults(func=run_stop, progress=progress.writing("output_dir"))

    u = csub.add_parser("status", help="the state of the capture in DIR (JSON)")
    u.add_argument("-D", "--output-dir", required=True, metavar="DIR")
    protocol.json_option(u, "the state")
    u.set_defaults(func=run_status)

    f = csub.add_parser("files", help="the finished capture's trace files and capture.json, with size and sha256 "
                        "(JSON): what a copy of them must match")
    f.add_argument("-D", "--output-dir", required=True, metavar="DIR")
    f.add_argument("--token", metavar="TOKEN", help="only the capture of this run token (else exit 2)")
    protocol.json_option(f, "the list")
    f.set_defaults(func=run_files)

    r = csub.add_parser("restore", help="put the ftrace tracer back after a capture that was killed")
    r.add_argument("-D", "--output-dir", metavar="DIR",
                   help="recover the dead capture recorded in DIR (instead of the machine's tracer)")
    protocol.json_option(r, "what was restored")
    r.set_defaults(func=run_restore)


def run_start(args):
    opts = control.StartOptions(
        args.device, args.output_dir, backend=args.backend, act_mask=args.act_mask, buffer_kb=args.buffer_size,
        buffer_count=args.buffer_count, duration=args.duration, mode=args.mode, interval=args.interval,
        keep_raw=args.keep_raw, force=args.force, splice=args.splice, token=args.token, check=args.check,
    )
    doc = control.start(opts)
    _answer(args, doc, indent=None)
    return 0


def _answer(args, doc, indent=2):
    """The document on stdout (or in the protocol with ``--json -``) and in every ``--json FILE``."""
    write_json(args.json, doc)
    if "-" not in args.json:
        show(doc, indent=indent)


def run_stop(args):
    doc = control.stop(args.output_dir, timeout=args.timeout, token=args.token, check=args.check)
    _answer(args, doc)
    if args.check:
        return 0
    if doc.get("error") and not doc.get("collected_before"):  # reported once, by the first stop that returns it
        return protocol.fail("capture_failed", doc["error"])
    if args.fail_on_drops and (doc.get("drops") or doc.get("drop_reports")):
        return protocol.fail("events_dropped", f"{doc['drops']} events dropped ({doc.get('drop_reports', 0)} "
                             "reports); use larger buffers (--buffer-size/--buffer-count)")
    return 0


def run_status(args):
    _answer(args, control.status(args.output_dir))
    return 0


def run_files(args):
    _answer(args, control.files(args.output_dir, args.token))
    return 0


def run_restore(args):
    tracefs.require_root()
    _answer(args, control.restore(args.output_dir))
    return 0

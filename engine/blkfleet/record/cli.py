"""``blkfleet record``: its command-line interface."""

import os
import re
import sys

from .. import codes, progress, protocol
from ..cliargs import directory, nonnegative_int, positive_int
from ..jsonout import write_json
from .deps import DepOptions
from .run import RecordOptions, record


def _c_integer(text):
    """Parse like C's atoll: optional sign and leading digits, anything after ignored, else 0."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def add_parser(sub):
    p = sub.add_parser(
        "record",
        help="convert DEV.blktrace.CPU traces into replay files (btrecord's flags)",
        description="Convert blktrace traces into replay files. Default: blkfleet's native format "
        "(per-IO times, real operations). --compat: byte-identical to btrecord 1.2.0.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("devices", nargs="*", metavar="DEV", help="device names as traced (e.g. sda)")
    p.add_argument("-d", "--input-directory", type=directory, default=".", metavar="DIR")
    p.add_argument("-D", "--output-directory", type=directory, default=".", metavar="DIR")
    p.add_argument("-F", "--find-traces", action="store_true", help="convert every device found in -d")
    p.add_argument("-m", "--max-bunch-time", type=_c_integer, metavar="NSEC",
                   help="bunch window in ns (default 10000000)")
    p.add_argument("-M", "--max-pkts", type=_c_integer, metavar="N",
                   help="IOs per bunch (default 8 with --compat, 64 native)")
    p.add_argument("-o", "--output-base", default="replay", metavar="BASE")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-j", "--jobs", type=positive_int, default=len(os.sched_getaffinity(0)), metavar="N",
                   help="trace files converted at a time, each by its own process (default: the CPUs this command "
                   "may use; one at a time with -v or --timing)")
    p.add_argument("--compat", action="store_true", help="write btrecord 1.2.0's format, byte for byte")
    p.add_argument("--accept-missing", action="store_true",
                   help="convert trace files that differ from what capture.json says the capture wrote (truncated "
                   "or missing files), and report the shortfall in the --json summary ('capture')")
    t = p.add_argument_group("timing and dependencies (native files of a capture with completions, format version 2)")
    t.add_argument("--timing", action="store_true",
                   help="write version 2 files: each IO's latency, in-flight count and parents, which '--mode load' "
                   "and '--mode dependency' replay need (the dependency analysis costs about 24 us of CPU per IO; "
                   "without it, version 1 files)")
    d = DepOptions()
    t.add_argument("--dep-window", type=nonnegative_int, default=d.window, metavar="NSEC",
                   help=f"an IO depends on IOs that completed within NSEC before it was issued (default {d.window})")
    t.add_argument("--dep-min-gap", type=nonnegative_int, default=d.min_gap, metavar="NSEC",
                   help=f"... but not within NSEC of its issue, too close to have caused it (default {d.min_gap})")
    t.add_argument("--dep-max-parents", type=positive_int, default=d.max_parents, metavar="N",
                   help=f"at most N such parents per IO, latest first (default {d.max_parents})")
    t.add_argument("--dep-scope", choices=("device", "task"), default=d.scope,
                   help="completion parents among all IOs of the device (default, hfplayer's rule) or only among "
                   "those the same task (pid) submitted")
    t.add_argument("--conflict-window", type=nonnegative_int, default=d.conflict_window, metavar="NSEC",
                   help="overlapping IOs (one of them writing) issued within NSEC of each other, or while the "
                   f"earlier one is in flight, are ordered as recorded (default {d.conflict_window})")
    protocol.json_option(p, "the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary lines on stderr")
    p.set_defaults(func=run, progress=progress.reading("input_directory"))


def run(args):
    opts = RecordOptions(
        input_dir=args.input_directory, output_dir=args.output_directory, devices=tuple(args.devices),
        find=args.find_traces, max_time=args.max_bunch_time, max_pkts=args.max_pkts, base=args.output_base,
        verbose=args.verbose, compat=args.compat, accept_missing=args.accept_missing, timing=args.timing,
        jobs=args.jobs,
        deps=DepOptions(args.dep_window, args.dep_min_gap, args.dep_max_parents, args.conflict_window,
                        args.dep_scope).checked(),
    )
    summaries, capture = record(opts, out=sys.stderr)
    if not args.quiet:
        for s in summaries:
            print(s.line(), file=sys.stderr)
    if args.json:
        write_json(args.json, {"files": [s.as_dict() for s in summaries], "capture": capture})
    return 0



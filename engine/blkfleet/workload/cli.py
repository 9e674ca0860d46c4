"""``blkfleet stats IN``: workload figures of a capture, replay files or foreign traces (docs/stats.md)."""

import sys

from .. import codes, progress, protocol
from ..cliargs import positive_int
from ..errors import BlkfleetError
from ..foreign.formats import FORMATS
from ..jsonout import write_json
from ..streams.quantities import duration_ns
from .run import directory_stats, foreign_stats
from .table import render


def add_parser(sub):
    p = sub.add_parser(
        "stats", help="workload figures per device and operation (counts, rates over time, sizes, inter-arrival, "
        "seeks, working set, hot extents, phases, Q2C and in-flight with completions)",
        description="Characterize a workload: a capture directory (DEV.blktrace.N), a directory of replay files "
        "(DEV.BASE.N, an import's output too), or foreign trace files with --format. Memory does not grow with the "
        "trace. A table on stdout; --json FILE the document.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="a directory, or trace files with --format")
    p.add_argument("--format", choices=list(FORMATS), help="the inputs are foreign traces of this format")
    p.add_argument("-i", "--input-base", default="replay", metavar="BASE", help="replay file base (default replay)")
    p.add_argument("-d", "--device", action="append", default=[], metavar="DEV", help="only this device (repeatable)")
    p.add_argument("--phases", type=positive_int, default=10, metavar="N",
                   help="phases: N equal stretches (default 10)")
    p.add_argument("--phase", type=duration_ns, metavar="TIME", help="phases of this length instead")
    p.add_argument("--tolerance", type=duration_ns, default=0, metavar="TIME", help="with --format: as import's")
    protocol.json_option(p, "the figures as JSON")
    p.set_defaults(func=run, progress=progress.reading("inputs"))


def run(args):
    if args.format:
        doc = foreign_stats(args.format, args.inputs, args.tolerance, select=args.device or None,
                            phases=args.phases, phase_ns=args.phase)
    else:
        if len(args.inputs) != 1:
            raise BlkfleetError("one directory at a time (or trace files with --format)")
        doc = directory_stats(args.inputs[0], args.input_base, args.device, args.phases, args.phase)
    if not protocol.machine() or args.json != ["-"]:
        sys.stdout.write(render(doc))
    if args.json:
        write_json(args.json, doc)
    return 0

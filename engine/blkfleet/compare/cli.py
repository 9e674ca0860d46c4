"""``blkfleet compare``: its command-line interface."""

import sys

from .. import codes, progress, protocol
from ..cliargs import add_acc_factor
from ..errors import BlkfleetError
from ..files import read_json
from ..jsonout import write_json
from .fidelity import compare_dirs, table


def replay_start(path):
    """The start instant (CLOCK_MONOTONIC ns) a replay's results JSON gives."""
    doc = read_json(path, "replay results")
    start = doc.get("start") if isinstance(doc, dict) else None
    value = start.get("monotonic_ns") if isinstance(start, dict) else None
    if type(value) is not int or value < 0:
        raise BlkfleetError(f"{path}: no start.monotonic_ns (not the results of a replay that started, or of an "
                            "engine older than this one)")
    return value


def add_parser(sub):
    p = sub.add_parser(
        "compare",
        help="fidelity of a replay: its capture against the original capture, IO by IO",
        description="Match the queued IOs (Q events) of a capture of a replay with those of the original "
        "capture on (operation, sector, size), the n-th with the n-th, and report issue-time and "
        "inter-arrival errors (percentiles, us), IOPS error per 100 ms bucket (MAPE, %) and the span ratio.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("original", metavar="ORIG", help="directory of the original capture (DEV.blktrace.CPU files)")
    p.add_argument("replay", metavar="REPLAY",
                   help="directory of the capture of the replay, or the replay's per-IO log (replay --io-log)")
    p.add_argument("--device", metavar="DEV", help="device of the original capture (default: the only one in ORIG)")
    p.add_argument("--replay-device", metavar="DEV",
                   help="device of the replay capture, or recorded device of the per-IO log (default: the only one "
                   "in REPLAY)")
    p.add_argument("--iteration", type=int, default=1, metavar="N",
                   help="with a per-IO log: the iteration compared (default 1)")
    add_acc_factor(p, "the replay ran X times faster (original times are divided by X; default 1)")
    p.add_argument("--reads-for-writes", action="store_true",
                   help="the replay ran without writes enabled: original writes match replayed reads of the "
                   "same extent, original discards/flushes/write-zeroes are expected missing (counted apart)")
    p.add_argument("--replay-results", metavar="FILE",
                   help="the replay's results JSON: IOs the replay capture saw before the replay's start instant "
                   "(the target's signature probe) are left out; the capture must have been made on the replay's "
                   "host (its times are that host's CLOCK_MONOTONIC)")
    protocol.json_option(p, "the figures as JSON (with '-' they replace the table)")
    p.set_defaults(func=run, progress=progress.reading("original", "replay"))


def run(args):
    result = compare_dirs(
        args.original, args.replay, device=args.device, replay_device=args.replay_device,
        acc=args.acc_factor, reads_for_writes=args.reads_for_writes,
        replay_start_ns=replay_start(args.replay_results) if args.replay_results else None, iteration=args.iteration,
    )
    write_json(args.json, result)
    if "-" not in args.json:
        sys.stdout.write(table(result))
    return 0

"""``blkfleet regress``: candidate runs against a named baseline; exit code 10 on a regression."""

import sys

from .. import codes, protocol
from ..cliargs import fraction, positive_int
from ..errors import BlkfleetError
from ..files import atomic_write
from ..jsonout import write_json
from ..results.store import Store
from ..results.store_location import db_option
from .significance import TESTS
from .verdict import EXIT_INSUFFICIENT, EXIT_PASS, METRICS, evaluate, markdown


def _metric_value(text):
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or name not in METRICS:
        raise BlkfleetError(f"invalid {text!r} (expected METRIC=NUMBER, METRIC one of {', '.join(METRICS)})")
    try:
        number = float(value.strip().rstrip("%").strip())
    except ValueError:
        raise BlkfleetError(f"invalid number in {text!r}") from None
    if not number >= 0:
        raise BlkfleetError(f"invalid {text!r}: must be >= 0")
    return name, number


def add_parser(sub):
    p = sub.add_parser(
        "regress",
        help="verdict of stored runs against a named baseline (exit 10 on a regression)",
        description="Compare candidate runs with a baseline per host and device on IOPS, MB/s, latency p50/p99 "
        "and lateness p99, over the per-iteration samples of every run, with a two-sided significance test. A "
        "metric regresses when it moved the bad way, by more than its tolerance, with p < alpha. "
        "Exit codes: 0 pass (or improvement), 10 regression, 12 too few samples (no regression), 2 bad input.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT, codes.REGRESSION, codes.INSUFFICIENT_SAMPLES),
    )
    p.add_argument("--baseline", required=True, metavar="NAME", help="a baseline set with 'results baseline set'")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--runs", nargs="+", type=int, metavar="ID", help="candidate runs")
    which.add_argument("--last", type=positive_int, metavar="N",
                       help="the last N runs of each baseline host and device stored after the baseline's newest "
                            "(default 1)")
    p.add_argument("--host", help="only this host")
    p.add_argument("--device", help="only this device (recorded name or target path)")
    p.add_argument("--metric", action="append", choices=tuple(METRICS), metavar="METRIC",
                   help=f"metrics to judge (repeat; default all: {', '.join(METRICS)})")
    p.add_argument("--tolerance", action="append", default=[], type=_metric_value, metavar="METRIC=PCT",
                   help="relative tolerance in percent (defaults: iops 5, mb_s 5, latency_p50 10, latency_p99 10, "
                   "lateness_p99 20)")
    p.add_argument("--abs-tolerance", action="append", default=[], type=_metric_value, metavar="METRIC=VALUE",
                   help="absolute floor in the metric's unit (default lateness_p99=50 us, others 0)")
    p.add_argument("--alpha", type=fraction, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--test", choices=tuple(TESTS), default="welch",
                   help="welch (default: per-iteration figures are near normal, works with few samples) or "
                   "mann-whitney (rank test, for many samples with outliers)")
    p.add_argument("--min-samples", type=positive_int, default=3, metavar="N",
                   help="fewer samples on a side gives 'insufficient' (default 3)")
    p.add_argument("--insufficient-ok", action="store_true",
                   help="exit 0 instead of 12 when some metric has too few samples and none regressed")
    protocol.json_option(p, "the result JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown summary to FILE ('-' for stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stdout")
    db_option(p)
    p.set_defaults(func=run)


def run(args):
    with Store(args.db, read_only=True) as store:
        result = evaluate(store, args.baseline, run_ids=args.runs, last=args.last, metrics=args.metric,
                          tolerances=dict(args.tolerance), abs_tolerances=dict(args.abs_tolerance), test=args.test,
                          alpha=args.alpha, min_samples=args.min_samples, host=args.host, device=args.device)
    if args.insufficient_ok and result["exit_code"] == EXIT_INSUFFICIENT:
        result["exit_code"] = EXIT_PASS
    text = markdown(result)
    write_json(args.json, result)
    if args.markdown == "-":
        sys.stdout.write(text)
    elif args.markdown:
        atomic_write(args.markdown, text)
    if not args.quiet and args.markdown != "-" and "-" not in args.json:
        sys.stdout.write(text)
    if result["exit_code"] == codes.REGRESSION:
        return protocol.fail("regression", f"regression against baseline {args.baseline}", echo=False)
    if result["exit_code"] == codes.INSUFFICIENT_SAMPLES:
        return protocol.fail("insufficient_samples", f"too few samples for a verdict against baseline "
                             f"{args.baseline}", echo=False)
    return result["exit_code"]

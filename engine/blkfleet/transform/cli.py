"""``blkfleet transform IN... -D OUT``: reshape replay files (or a capture) for a target; ``bundle create`` takes the
same options (``add_options``, ``transform_into``)."""

import os
import sys

from .. import codes, protocol
from ..cliargs import positive_float
from ..errors import BlkfleetError
from ..foreign.run import prepare_output, remove_old
from ..jsonout import write_json
from ..replayfile.ops import OP_NAMES
from ..streams import origin
from ..streams.quantities import duration_ns, positive_size, seconds, signed_duration_ns, signed_size_bytes
from .run import Input, check_inputs, record_origin, transform
from .steps import SECTOR, Plan

OPS = {name: op for op, name in enumerate(OP_NAMES)}


def add_parser(sub):
    p = sub.add_parser(
        "transform", help="reshape replay files for a target: time window, op filter, device renames and merges, "
        "LBA shift/scale/wrap/alignment, time scaling, mixing traces",
        description="Read replay files (or a capture) of one or more inputs and write native replay files into OUT, "
        "with OUT/origin.json recording every transform. Steps, in order: time map of each input (--start-offset, "
        "--rate-factor), --from/--to/--duration, --skip, --shift, --scale, --wrap, --align, --time-scale; then "
        "--rename (several devices to one name merge, by time).",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="directories of replay files (DEV.BASE.N) or captures")
    p.add_argument("-D", "--output-directory", required=True, metavar="OUT", help="made if missing")
    p.add_argument("-i", "--input-base", default="replay", metavar="BASE", help="input replay file base")
    p.add_argument("-o", "--output-base", default="replay", metavar="BASE", help="output replay file base")
    p.add_argument("--force", action="store_true", help="replace replay files and origin.json an earlier run left")
    add_options(p, mixing=True)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary lines on stderr")
    protocol.json_option(p, "the summary as JSON")
    p.set_defaults(func=run)


def add_options(p, mixing=False):
    """The transform options (``mixing``: also those of several inputs)."""
    g = p.add_argument_group("transforms (docs/transform.md)")
    g.add_argument("--from", dest="t_from", type=duration_ns, metavar="TIME",
                   help="keep IOs from TIME after the trace's start")
    g.add_argument("--to", dest="t_to", type=duration_ns, metavar="TIME", help="keep IOs before TIME after the start")
    g.add_argument("--duration", type=duration_ns, metavar="TIME", help="keep TIME from --from (or the start) on")
    g.add_argument("--skip", action="append", default=[], metavar="OP[,OP]",
                   help=f"leave out these operations ({', '.join(OP_NAMES)})")
    g.add_argument("--rename", action="append", default=[], metavar="[K:]OLD=NEW",
                   help="device OLD becomes NEW (of input K only, counted from 0); several to one NEW merge them")
    g.add_argument("--shift", type=signed_size_bytes, default=0, metavar="BYTES", help="add BYTES to every offset")
    g.add_argument("--scale", type=positive_float, metavar="X", help="multiply every offset by X")
    g.add_argument("--wrap", type=positive_size, metavar="SIZE",
                   help="wrap offsets around into a target of SIZE bytes, keeping alignment")
    g.add_argument("--align", type=positive_size, metavar="BYTES",
                   help="align offsets down and ends up to BYTES (the target's logical block size)")
    g.add_argument("--time-scale", type=positive_float, default=1.0, metavar="X",
                   help="multiply times from the start by X (2: half as fast)")
    if mixing:
        g.add_argument("--start-offset", action="append", default=[], metavar="K=TIME",
                       help="input K starts TIME after the mix's start")
        g.add_argument("--rate-factor", action="append", default=[], metavar="K=X",
                       help="input K's IOs come X times as fast")


def given(args):
    """Whether any transform option was given."""
    return any((args.t_from is not None, args.t_to is not None, args.duration is not None, args.skip, args.rename,
                args.shift, args.scale is not None, args.wrap is not None, args.align is not None,
                args.time_scale != 1.0, getattr(args, "start_offset", []), getattr(args, "rate_factor", [])))


def _per_input(items, what, parse, count):
    out = {}
    for item in items:
        k, eq, value = item.partition("=")
        if not eq or not k.strip().isdigit() or int(k) >= count:
            raise BlkfleetError(f"{what} {item!r}: expected K=VALUE with K an input number 0..{count - 1}")
        try:
            out[int(k)] = parse(value)
        except Exception as e:  # argparse's type functions raise ArgumentTypeError
            raise BlkfleetError(f"{what} {item!r}: {e}") from None
    return out


def plan_of(args, count=1):
    """(Plan, renames {(input or None, old): new}, offsets {input: ns}, rates {input: factor}, recorded options)."""
    lo, hi = args.t_from, args.t_to
    if args.duration is not None:
        if hi is not None:
            raise BlkfleetError("--to and --duration exclude each other")
        hi = (lo or 0) + args.duration
    if lo is not None and hi is not None and hi <= lo:
        raise BlkfleetError("the time window is empty (--to must come after --from)")
    skip = set()
    for item in args.skip:
        for name in filter(None, (x.strip() for x in item.split(","))):
            if name not in OPS:
                raise BlkfleetError(f"--skip {name!r}: not one of {', '.join(OP_NAMES)}")
            skip.add(OPS[name])
    if args.shift % SECTOR:
        raise BlkfleetError(f"--shift {args.shift}: a multiple of {SECTOR} bytes")
    for what, value in (("--align", args.align), ("--wrap", args.wrap)):
        if value is not None and value % SECTOR:
            raise BlkfleetError(f"{what} {value}: a multiple of {SECTOR} bytes")
    if args.align is not None and args.align & (args.align - 1):
        raise BlkfleetError(f"--align {args.align}: a power of two")
    renames = {}
    for item in args.rename:
        left, eq, new = item.partition("=")
        k, colon, old = left.rpartition(":")
        if not eq or not old or not new or (colon and not (k.isdigit() and int(k) < count)):
            raise BlkfleetError(f"--rename {item!r}: expected OLD=NEW or K:OLD=NEW (K an input number 0..{count - 1})")
        renames[(int(k) if colon else None, old)] = new
    offsets = _per_input(getattr(args, "start_offset", []), "--start-offset", signed_duration_ns, count)
    rates = _per_input(getattr(args, "rate_factor", []), "--rate-factor", positive_float, count)
    if any(v < 0 for v in offsets.values()):
        raise BlkfleetError("--start-offset: a time of 0 or more")
    plan = Plan((lo, hi), skip, args.shift, args.scale, args.wrap, args.align, args.time_scale)
    recorded = {
        "from_s": None if lo is None else seconds(lo), "to_s": None if hi is None else seconds(hi),
        "skip": sorted(OP_NAMES[op] for op in skip), "shift": args.shift or None, "scale": args.scale,
        "wrap": args.wrap, "align": args.align, "time_scale": None if args.time_scale == 1.0 else args.time_scale,
        "rename": [f"{'' if k is None else f'{k}:'}{old}={new}" for (k, old), new in sorted(
            renames.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or 0, kv[0][1]))],
        "start_offset": [f"{k}={seconds(v)}" for k, v in sorted(offsets.items())],
        "rate_factor": [f"{k}={v:g}" for k, v in sorted(rates.items())],
    }
    return plan, renames, offsets, rates, recorded


def transform_into(directories, output_dir, in_base, out_base, args):
    """Run the transforms of ``args`` from ``directories`` (checked by the caller: ``check_inputs``) into
    ``output_dir`` (prepared by the caller); returns (file summaries, origin document). The files are in place only
    when this returns."""
    plan, renames, offsets, rates, recorded = plan_of(args, len(directories))
    inputs = [Input(d, in_base, offsets.get(k, 0), rates.get(k, 1.0)) for k, d in enumerate(directories)]
    written = transform(inputs, output_dir, out_base, plan, renames)
    try:
        options = dict(recorded, input_base=in_base, base=out_base)
        counts = dict(plan.counts, files=len(written.files), devices=len({f[1] for f in written.files}))
        doc = record_origin(output_dir, inputs, options, counts)
    except BaseException:
        written.abort()
        raise
    written.commit()
    return written.summaries(), doc


def run(args):
    for d in args.inputs:
        if os.path.abspath(d) == os.path.abspath(args.output_directory):
            raise BlkfleetError(f"{d}: the output directory cannot be an input")
    check_inputs(args.inputs)
    old = prepare_output(args.output_directory, args.output_base, args.force)
    files, doc = transform_into(args.inputs, args.output_directory, args.input_base, args.output_base, args)
    remove_old(args.output_directory, old, {os.path.basename(f.output) for f in files} | {origin.FILE})
    counts = doc["counts"]
    if not args.quiet:
        for f in files:
            print(f.line(), file=sys.stderr)
        done = [f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()
                if k not in ("ios_in", "ios_out", "files", "devices") and v]
        print(f"blkfleet transform: {counts['ios_in']:,} IOs in, {counts['ios_out']:,} out"
              + "".join(f"; {d}" for d in done), file=sys.stderr)
    if args.json:
        write_json(args.json, {"files": [f.as_dict() for f in files], "counts": counts, "origin": doc,
                               "output_directory": os.path.abspath(args.output_directory), "base": args.output_base})
    return 0

"""``blkfleet import FORMAT IN... -D DIR``: foreign traces into native replay files (docs/formats.md, "Foreign
traces")."""

import os
import sys

from .. import codes, progress, protocol
from ..errors import BlkfleetError
from ..jsonout import write_json
from ..streams import origin
from ..streams.quantities import duration_ns, seconds
from .csvmap import OPS, TIME_UNITS, CsvLayout
from .formats import FORMATS
from .run import Importer, prepare_output, remove_old

DELIMITERS = {"comma": b",", "tab": b"\t", "semicolon": b";", "space": None}


def add_parser(sub):
    p = sub.add_parser(
        "import", help="convert foreign traces (fio iolog, blkparse text, MSR/Alibaba/Tencent CSV, mapped CSV) into "
        "native replay files",
        description="Read foreign block traces (plain, gzip, xz, bzip2, zstandard when the module is installed, or tar "
        "archives of them) and write one native replay file per device, DIR/DEV.BASE.0, with DIR/origin.json. "
        "Memory does not grow with the trace.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    fsub = p.add_subparsers(dest="action", metavar="FORMAT", parser_class=type(p))
    fsub.required = True
    for name, (_factory, what) in FORMATS.items():
        _common(fsub.add_parser(name, help=what, description=f"Import {what}."))
    c = fsub.add_parser("csv", help="CSV with a column mapping", description="Import CSV (or blank-separated) "
                        "lines whose fields are mapped with --columns; units as given (docs/formats.md).")
    _common(c)
    c.add_argument("--columns", required=True, metavar="MAP",
                   help="FIELD=INDEX,...: time, offset, size (required), op, device (optional; device=1+2 joins "
                   "fields); indexes from 0")
    c.add_argument("--fields", type=int, metavar="N", help="fields per line (default: the highest index + 1)")
    c.add_argument("--time-unit", required=True, choices=sorted(TIME_UNITS), help="unit of the time field")
    c.add_argument("--offset-unit", type=int, default=1, metavar="BYTES", help="bytes per offset unit (default 1)")
    c.add_argument("--size-unit", type=int, default=1, metavar="BYTES", help="bytes per size unit (default 1)")
    c.add_argument("--ops", metavar="MAP", help="VALUE=OP,...: what the op field's values mean (OP: read, write, "
                   "discard, flush, write_zeroes)")
    c.add_argument("--op", choices=list(OPS), default="read", help="the op of every IO without an op field")
    c.add_argument("--delimiter", default=",", metavar="C",
                   help="a one-character delimiter, or comma, tab, semicolon, space (runs of blanks); default ','")
    c.add_argument("--skip-lines", type=int, default=0, metavar="N", help="lines to skip at the start of each input")
    c.add_argument("--device-name", default="trace", metavar="NAME",
                   help="the device's name when no field names it (default trace)")


def _common(p):
    p.add_argument("inputs", nargs="+", metavar="IN", help="trace files, in time order")
    p.add_argument("-D", "--output-directory", required=True, metavar="DIR",
                   help="directory for DEV.BASE.0 and origin.json (made if missing)")
    p.add_argument("-o", "--output-base", default="replay", metavar="BASE", help="replay file base (default replay)")
    p.add_argument("--rename", action="append", default=[], metavar="SRC=NAME",
                   help="name the device SRC of the trace NAME (several SRC to one NAME merge them); repeatable")
    p.add_argument("--select", action="append", default=[], metavar="SRC[,SRC...]",
                   help="import only these devices of the trace (its own names); repeatable")
    p.add_argument("--tolerance", type=duration_ns, default=0, metavar="TIME",
                   help="put IOs up to TIME earlier than an IO before them back in time order (default 0: an IO "
                   "earlier than one before it is an error)")
    p.add_argument("--force", action="store_true", help="replace replay files and origin.json an earlier run left")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary lines on stderr")
    protocol.json_option(p, "the summary as JSON")
    p.set_defaults(func=run, progress=progress.reading("inputs"))


def _pairs(items, what):
    out = {}
    for item in items:
        for part in item.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise BlkfleetError(f"invalid {what} {part!r} (expected KEY=VALUE)")
            out[key.strip()] = value.strip()
    return out


def csv_layout(args):
    """The CsvLayout of ``import csv``'s options (and the options as recorded in origin.json)."""
    spec = _pairs([args.columns], "--columns item")
    unknown = set(spec) - {"time", "offset", "size", "op", "device"}
    if unknown or not {"time", "offset", "size"} <= set(spec):
        raise BlkfleetError(f"--columns {args.columns!r}: needs time, offset and size (and may give op, device)")
    try:
        index = {k: [int(x) for x in v.split("+")] for k, v in spec.items()}
    except ValueError:
        raise BlkfleetError(f"--columns {args.columns!r}: indexes are whole numbers") from None
    used = [i for v in index.values() for i in v]
    fields = args.fields if args.fields is not None else max(used) + 1
    if min(used) < 0 or max(used) >= fields or not 0 < fields <= 64:
        raise BlkfleetError(f"--columns {args.columns!r}: indexes must be 0 .. {fields - 1} (--fields at most 64)")
    if any(len(v) != 1 for k, v in index.items() if k != "device"):
        raise BlkfleetError(f"--columns {args.columns!r}: only device may join fields (+)")
    op_values = None
    if "op" in index:
        if not args.ops:
            raise BlkfleetError("--columns has an op field: --ops VALUE=OP,... says what its values mean")
        op_values = {}
        for value, op in _pairs([args.ops], "--ops item").items():
            if op not in OPS:
                raise BlkfleetError(f"--ops: {op!r} is not one of {', '.join(OPS)}")
            op_values[value.encode()] = OPS[op]
    if args.offset_unit <= 0 or args.size_unit <= 0 or args.skip_lines < 0:
        raise BlkfleetError("--offset-unit and --size-unit must be above 0, --skip-lines at least 0")
    delimiter = DELIMITERS.get(args.delimiter, args.delimiter.encode())
    if delimiter is not None and (len(delimiter) != 1 or delimiter in b"\n\r"):
        raise BlkfleetError(f"--delimiter {args.delimiter!r}: one character, or comma, tab, semicolon, space")
    layout = CsvLayout(fields, index["time"][0], index["offset"][0], index["size"][0], TIME_UNITS[args.time_unit],
                       args.offset_unit, args.size_unit, index.get("op", [None])[0], op_values, OPS[args.op],
                       tuple(index.get("device", ())), delimiter, skip_lines=args.skip_lines,
                       device_name=args.device_name)
    recorded = {"columns": args.columns, "fields": fields, "time_unit": args.time_unit,
                "offset_unit": args.offset_unit, "size_unit": args.size_unit, "ops": args.ops,
                "op": None if "op" in index else args.op, "delimiter": args.delimiter, "skip_lines": args.skip_lines,
                "device_name": None if "device" in index else args.device_name}
    return layout, recorded


def run(args):
    if args.action == "csv":
        fmt, recorded = csv_layout(args)
    else:
        fmt, recorded = FORMATS[args.action][0](), {}
    renames = _pairs(args.rename, "--rename")
    select = [s.strip() for item in args.select for s in item.split(",") if s.strip()] or None
    for path in args.inputs:
        if not os.path.isfile(path):
            raise BlkfleetError(f"{path}: not a file")
    old = prepare_output(args.output_directory, args.output_base, args.force)
    importer = Importer(fmt, args.output_directory, args.output_base, renames, select, args.tolerance)
    importer.read(args.inputs)
    summary, files = importer.summary()  # the counts (the files are not closed yet: no bunch count)
    options = dict(recorded, format=args.action, base=args.output_base, tolerance_s=seconds(args.tolerance),
                   rename=[f"{k}={v}" for k, v in sorted(renames.items())], select=sorted(select or []),
                   time_base_s=summary["time_base_s"])
    counts = {"ios": summary["ios"], "bytes": summary["bytes"], "devices": len(files),
              "unaligned": summary["unaligned"], "reordered": summary["reordered"], "skipped": summary["skipped"],
              "left_out": sum(summary["left_out"].values())}
    doc = origin.step("import", [(os.path.basename(p), os.path.getsize(p), None) for p in args.inputs], options,
                      counts)
    problem = origin.trouble(doc)
    if problem:
        importer.abort()
        raise BlkfleetError(f"cannot record the origin: {problem}")
    importer.commit()
    summary, files = importer.summary()
    origin.write(args.output_directory, doc)
    remove_old(args.output_directory, old, {os.path.basename(f.output) for f in files} | {origin.FILE})
    summary.update(format=args.action, output_directory=os.path.abspath(args.output_directory),
                   base=args.output_base, origin=doc)
    if not args.quiet:
        for f in files:
            print(f.line(), file=sys.stderr)
        for what, n in (("offsets not on a 512-byte boundary (rounded down)", summary["unaligned"]),
                        ("IOs put back in time order", summary["reordered"]),
                        ("Q events not imported (SCSI commands, no data)", summary["skipped"]),
                        ("IOs of devices not selected", sum(summary["left_out"].values()))):
            if n:
                print(f"blkfleet import: {n} {what}", file=sys.stderr)
    if args.json:
        write_json(args.json, summary)
    return 0

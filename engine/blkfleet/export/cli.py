"""``blkfleet export fio-iolog|fio-job IN -o FILE``: replay files or a capture for fio."""

import sys

from .. import codes, protocol
from ..cliargs import positive_int
from ..errors import BlkfleetError
from ..jsonout import write_json
from ..streams.quantities import duration_ns
from ..streams.sources import open_source
from .iolog import export_iolog, file_problem


def add_parser(sub):
    p = sub.add_parser(
        "export", help="write replay files or a capture as a fio iolog (v3) or a fio job file",
        description="fio-iolog: every IO at its time, for fio --read_iolog. fio-job: a job file whose jobs "
        "approximate the workload phase by phase (mix, sizes, randomness, rate, queue depth).",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    esub = p.add_subparsers(dest="action", metavar="WHAT", parser_class=type(p))
    esub.required = True
    i = esub.add_parser("fio-iolog", help="a fio iolog, version 3")
    _common(i)
    i.set_defaults(func=run_iolog)
    j = esub.add_parser("fio-job", help="a fio job file approximating the workload")
    _common(j)
    j.add_argument("--phases", type=positive_int, default=4, metavar="N",
                   help="jobs per device, one per equal stretch of time (default 4)")
    j.add_argument("--phase", type=duration_ns, metavar="TIME", help="phases of this length instead of --phases")
    j.add_argument("--iodepth", type=positive_int, metavar="N",
                   help="queue depth of every job (default: the in-flight IOs of the capture's completions, else 1)")
    j.set_defaults(func=run_job)


def _common(p):
    p.add_argument("input", metavar="IN", help="a directory of replay files (DEV.BASE.N) or a capture "
                   "(DEV.blktrace.N)")
    p.add_argument("devices", nargs="*", metavar="DEV", help="devices to export (default: all)")
    p.add_argument("-i", "--input-base", default="replay", metavar="BASE", help="replay file base (default replay)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--filename", action="append", default=[], metavar="DEV=PATH",
                   help="the file fio opens for DEV (default /dev/DEV); repeatable")
    protocol.json_option(p, "the summary as JSON")


def filenames(source, items):
    names = {d: f"/dev/{d}" for d in source.devices}
    for item in items:
        dev, eq, path = item.partition("=")
        if not eq or dev not in source.devices:
            raise BlkfleetError(f"--filename {item!r}: expected DEV=PATH for one of {', '.join(source.devices)}")
        names[dev] = path
    for dev, path in names.items():
        problem = file_problem(path)
        if problem:
            raise BlkfleetError(f"file name {path!r} of {dev}: {problem}")
    return names


def run_iolog(args):
    source = open_source(args.input, args.input_base, args.devices)
    devices = list(source.devices)
    summary = export_iolog(source, devices, filenames(source, args.filename), args.output)
    print(f"blkfleet export: {summary['ios']} IOs of {', '.join(devices)} over {summary['span_ns'] / 1e9:.6f} s -> "
          f"{args.output}" + (f" ({summary['write_zeroes_as_writes']} write-zeroes as writes)"
                              if summary["write_zeroes_as_writes"] else ""), file=sys.stderr)
    if args.json:
        write_json(args.json, dict(summary, format="fio-iolog"))
    return 0


def run_job(args):
    from .job import export_job  # the workload figures, only for this command

    source = open_source(args.input, args.input_base, args.devices)
    summary = export_job(source, list(source.devices), filenames(source, args.filename), args.output,
                         phases=args.phases, phase_ns=args.phase, iodepth=args.iodepth)
    print(f"blkfleet export: {summary['jobs']} fio jobs for {', '.join(source.devices)} -> {args.output}",
          file=sys.stderr)
    if args.json:
        write_json(args.json, dict(summary, format="fio-job"))
    return 0

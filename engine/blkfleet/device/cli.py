"""``blkfleet device info``: its command-line interface."""

from .. import codes, protocol
from ..jsonout import show, write_json
from .content import PROBES


def add_parser(sub):
    p = sub.add_parser("device", help="facts about block devices, CPUs, kernel tracing, AIO and io_uring (JSON)",
                       description="What the host's block devices are and hold, and what the host offers blkfleet.")
    dsub = p.add_subparsers(dest="device_command", metavar="ACTION", parser_class=type(p))
    dsub.required = True
    i = dsub.add_parser(
        "info", help="one JSON document: devices (size, block sizes, queue, mounts, swap, holders, partitions, "
        "content), cpus, tracing, aio, io_uring, kernel; reads only",
        description="Report block devices and the host. Reads /sys and /proc and, for the content probe, the "
        "blocks where signatures lie (blkid -p, or blkfleet's own table, as 'replay -W' probes a target).",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT))
    i.add_argument("devices", nargs="*", metavar="DEV",
                   help="kernel names (sda, loop0) or paths (/dev/disk/by-id/...); default: every whole device")
    i.add_argument("--include-empty", action="store_true",
                   help="without DEV: also devices of size 0 (unattached loop devices)")
    i.add_argument("--include-partitions", action="store_true", help="without DEV: also each partition")
    i.add_argument("--probe", choices=PROBES, default="auto",
                   help="how content is found: blkid -p, internal (the signature table replay uses), none; "
                   "auto (default): blkid when installed")
    protocol.json_option(i, "the document (also printed on stdout)")
    i.set_defaults(func=run_info)


def run_info(args):
    from .info import info

    doc = info(args.devices, args.include_empty, args.include_partitions, args.probe)
    write_json(args.json, doc)
    if "-" not in args.json:
        show(doc)
    return 0

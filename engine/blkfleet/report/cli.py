"""``blkfleet report``: its command-line interface (stub parser; the implementation follows)."""

from ..errors import BlkfleetError


def add_parser(sub):
    p = sub.add_parser("report", help="(in progress)")
    p.set_defaults(func=run)


def run(args):
    raise BlkfleetError("report: not implemented yet")

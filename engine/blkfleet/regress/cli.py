"""``blkfleet regress``: its command-line interface (stub parser; the implementation follows)."""

from ..errors import BlkfleetError


def add_parser(sub):
    p = sub.add_parser("regress", help="(in progress)")
    p.set_defaults(func=run)


def run(args):
    raise BlkfleetError("regress: not implemented yet")

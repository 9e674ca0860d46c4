"""``blkfleet compare``: its command-line interface (placeholder, filled in by the next commit)."""


def add_parser(sub):
    p = sub.add_parser("compare", help="fidelity of a replay capture against the original capture")
    p.set_defaults(func=lambda args: 0)

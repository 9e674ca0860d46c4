"""``blkfleet workdir [--check] DIR``: the directory (made with its missing parents), or a one-line refusal."""

import os

from .. import codes
from ..files import work_dir
from ..jsonout import show, write_json
from ..protocol import json_option


def add_parser(sub):
    p = sub.add_parser(
        "workdir", help="make a directory for outputs, refusing one that anyone but root or you could change",
        description="Make DIR and its missing parents (mode 0755), or check it: every directory on its path must be "
        "owned by root or by you and not writable by others (a sticky directory such as /tmp only above it), and "
        "a symbolic link on the way is followed only when it is root's or yours. Otherwise nothing is made and "
        "the command exits 2 with the reason. Prints {path, real_path, created, exists}.",
        epilog=codes.epilog(codes.SUCCESS, codes.BAD_INPUT),
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--check", action="store_true", help="make nothing; judge the part of DIR's path that exists")
    json_option(p, "the document")
    p.set_defaults(func=run)


def run(args):
    existed = os.path.isdir(args.directory)
    real = work_dir(args.directory, create=not args.check)
    doc = {"path": os.path.abspath(args.directory), "real_path": real, "created": not existed and not args.check,
           "exists": existed}
    write_json(args.json, doc)
    if "-" not in args.json:
        show(doc, indent=None)
    return 0

"""The ``blkfleet`` command line: one subcommand per step of the data flow."""

import argparse
import importlib
import sys

from . import __version__
from .errors import BlkfleetError

# Subcommand -> the module that adds its parser (``add_parser(sub)``); only the one used is imported, so a
# command starts fast (the converter's speed is measured against C, start-up included).
COMMANDS = {
    "capture": "capture", "record": "record", "bundle": "bundle", "compare": "compare", "replay": "replay",
    "results": "results", "regress": "regress", "report": "report", "job": "job",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (each package adds its subcommand via ``add_parser``)."""

    def error(self, message):
        raise BlkfleetError(f"{self.prog}: {message}")


def build_parser(argv=None):
    """The parser; with ``argv`` naming a subcommand, only that subcommand's module is imported."""
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    names = [chosen] if chosen in COMMANDS else list(COMMANDS)
    parser = _Parser(prog="blkfleet", description="Block-IO capture, conversion and faithful replay.")
    parser.add_argument("-V", "--version", action="version", version=f"blkfleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in names:
        importlib.import_module(f".{COMMANDS[name]}.cli", __package__).add_parser(sub)
    return parser


def main(argv=None):
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv).parse_args(argv)
        return args.func(args)
    except BlkfleetError as e:
        print(f"blkfleet: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"blkfleet: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blkfleet: interrupted", file=sys.stderr)
        return 130

"""The ``blkfleet`` command line: one subcommand per step of the data flow."""

import argparse
import sys

from . import __version__
from .bundle import cli as bundle_cli
from .capture import cli as capture_cli
from .compare import cli as compare_cli
from .errors import BlkfleetError
from .record import cli as record_cli
from .regress import cli as regress_cli
from .replay import cli as replay_cli
from .report import cli as report_cli
from .results import cli as results_cli

COMMANDS = (capture_cli, record_cli, bundle_cli, compare_cli, replay_cli, results_cli, regress_cli, report_cli)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (each package adds its subcommand via ``add_parser``)."""

    def error(self, message):
        raise BlkfleetError(f"{self.prog}: {message}")


def build_parser():
    parser = _Parser(prog="blkfleet", description="Block-IO capture, conversion and faithful replay.")
    parser.add_argument("-V", "--version", action="version", version=f"blkfleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
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

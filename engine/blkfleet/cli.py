"""The ``blkfleet`` command line: one subcommand per step of the data flow."""

import argparse
import errno
import importlib
import sys
import traceback

from . import __version__, codes, progress, protocol
from .errors import BlkfleetError

# Subcommand -> the module that adds its parser (``add_parser(sub)``); only the one used is imported, so a
# command starts fast (the converter's speed is measured against C, start-up included).
COMMANDS = {
    "capture": "capture", "record": "record", "bundle": "bundle", "compare": "compare", "replay": "replay",
    "results": "results", "regress": "regress", "report": "report", "job": "job", "device": "device",
    "import": "foreign", "export": "export", "stats": "workload", "transform": "transform", "workdir": "workdir",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (each package adds its subcommand via ``add_parser``): the
    line is ``blkfleet: MESSAGE (see 'blkfleet COMMAND --help')``, one prefix like every other error, the command
    named in the hint."""

    def error(self, message):
        raise BlkfleetError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but words left over are reported against the subcommand they were given to."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = " ".join([self.prog, protocol.command_of(parsed)]).strip()
            raise BlkfleetError(f"unrecognized arguments: {' '.join(extra)} (see '{command} --help')")
        return parsed


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
    _complete(parser, codes.epilog(*sorted(codes.EXITS)))
    return parser


def subcommands(parser):
    """(name, parser) of each direct subcommand of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _complete(parser, epilog):
    """Every command and subcommand answers ``-V`` (as btrecord and btreplay do) and lists its exit codes in its
    help: its own list, else the nearest enclosing command's."""
    if "-V" not in parser._option_string_actions:
        parser.add_argument("-V", "--version", action="version", version=f"blkfleet {__version__}")
    parser.epilog = parser.epilog or epilog
    for _, child in subcommands(parser):
        _complete(child, parser.epilog)


def main(argv=None):
    """Run one command; returns its exit code (blkfleet.codes). With ``--json -`` it also prints the protocol
    document (blkfleet.protocol), whatever happened, errors and bugs included."""
    argv = sys.argv[1:] if argv is None else list(argv)
    session = protocol.Session(argv, COMMANDS)
    with session.running():
        code = _dispatch(argv, session)
    return session.finish(code)


def _dispatch(argv, session):
    try:
        args = build_parser(argv).parse_args(argv)
        session.command = protocol.command_of(args)
        if not progress.wanted(args):
            return args.func(args)
        with progress.Line(f"blkfleet {session.command}", args.progress(args)):
            return args.func(args)
    except BlkfleetError as e:
        print(f"blkfleet: {e}", file=sys.stderr)
        cause = e.__context__
        if "code" not in vars(e) and type(e).code == "invalid_input" and isinstance(cause, OSError) and cause.errno:
            code, details = _os_error(cause)  # an OSError the command put in its own words
            return session.failed(code, str(e), **details, **e.details)
        return session.failed(e.code, str(e), **e.details)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        message = f"{where}{e.strerror or e}"
        print(f"blkfleet: {message}", file=sys.stderr)
        code, details = _os_error(e)
        return session.failed(code, message, **details)
    except KeyboardInterrupt:
        print("blkfleet: interrupted", file=sys.stderr)
        return session.failed("interrupted", "interrupted")
    except SystemExit as e:  # argparse's --help and --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else session.failed(
            "invalid_input", str(e.code))
    except Exception as e:  # a bug: its traceback, and still one protocol document
        traceback.print_exc()
        return session.failed("internal_error", f"{type(e).__name__}: {e}")


def _os_error(e):
    """(protocol error code, details) of an OSError: not_found for ENOENT, else os_error; its errno name and
    file."""
    details = {"errno": errno.errorcode.get(e.errno)} if e.errno else {}
    if e.filename:
        details["path"] = str(e.filename)
    return "not_found" if e.errno == errno.ENOENT else "os_error", details

"""The machine protocol of the ``blkfleet`` commands (docs/protocol.md).

With ``--json -`` a command prints exactly one JSON document on stdout, whatever happens::

    {"protocol": 1, "command": "job status", "engine_version": "0.1.0", "exit_code": 0,
     "result": {...}, "error": null}

``result`` is the command's own document (the one ``--json FILE`` writes; its schema per command:
schemas/commands.json) or null;
``error`` is null when ``exit_code`` is 0, else ``{"code": ..., "message": ..., ...}`` with a code of
blkfleet.codes. A failure may come with a result: the partial results of a replay, the summary of a capture that
dropped events, the verdict of a regression. Everything else the command would print on stdout (tables, ids,
summaries) goes to stderr instead, so a controller never parses human text. Without ``--json -`` nothing
changes: the human output, and one ``blkfleet: ...`` line on stderr for an error.

A document always has ``protocol`` first among what a reader checks: a reader refuses a version it does not
know (a newer engine), and an older engine, which has no ``--json -`` for the command, fails its argument check.
"""

import contextlib
import json
import sys

from . import __version__, codes

VERSION = 1
SCHEMA = "protocol.schema.json"

# schemas/commands.json names the document each command puts in "result" (schemas/): engine tests check real
# outputs against them, the collection's tests what its runners parse.
COMMANDS = "commands.json"

# argparse destinations of the subcommand words, outermost first ("results baseline list")
_COMMAND_DESTS = ("command", "capture_command", "bundle_command", "results_command", "device_command", "action",
                  "baseline_command")

_session = None  # the Session of the command main() runs, if any


def requested(argv):
    """Whether ``argv`` asks for the protocol document: ``--json -`` (or ``--json=-``) before any ``--``."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--json=-" or (arg == "--json" and argv[i + 1:i + 2] == ["-"]):
            return True
    return False


def command_of(args):
    """The subcommand words of parsed arguments: ``job status``, ``replay``, ``results baseline list``."""
    return " ".join(str(getattr(args, d)) for d in _COMMAND_DESTS if getattr(args, d, None))


class Session:
    """The protocol side of one command run by ``blkfleet.cli.main``.

    @machine: ``--json -`` was given, @command: its subcommand words (a guess from ``argv`` until parsed),
    @result: the command's document, once it has one, @error: the protocol error object of its failure."""

    def __init__(self, argv, known_commands=()):
        self.machine = requested(argv)
        first = next((a for a in argv if not a.startswith("-")), None)
        self.command = first if first in known_commands else None
        self.result = None
        self.error = None

    @contextlib.contextmanager
    def running(self):
        """While the command runs: it is the current session, and with ``--json -`` its stdout is stderr."""
        global _session
        _session, previous = self, _session
        try:
            if self.machine:
                sys.stdout.flush()
                with contextlib.redirect_stdout(sys.stderr):
                    yield self
            else:
                yield self
        finally:
            _session = previous

    def failed(self, code, message, **details):
        """Record the failure (the first one recorded is the one reported); returns its exit code."""
        if self.error is None:
            self.error = {"code": code, "message": message, **details}
        return codes.exit_code(code)

    def document(self, exit_code):
        error = self.error if exit_code else None
        if exit_code and error is None:  # a command that returned a code without saying why
            error = {"code": next((n for n, (c, _m) in codes.ERRORS.items() if c == exit_code), "internal_error"),
                     "message": f"exit code {exit_code}"}
        return {"protocol": VERSION, "command": self.command, "engine_version": __version__,
                "exit_code": exit_code, "result": self.result, "error": error}

    def finish(self, exit_code):
        """Print the protocol document (``--json -``); returns the exit code."""
        if self.machine:
            try:
                sys.stdout.write(json.dumps(self.document(exit_code), sort_keys=True) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                pass
        return exit_code


def machine():
    """Whether the running command answers in the protocol (``--json -``)."""
    return _session is not None and _session.machine


def put_result(doc):
    """The command's document for the protocol; False when there is no protocol to take it (print it then)."""
    if not machine():
        return False
    _session.result = doc
    return True


def fail(code, message, echo=True, **details):
    """A failure the command reports itself (often beside a result): ``blkfleet: MESSAGE`` on stderr unless
    ``echo`` is false, the protocol's error object; returns the exit code to return."""
    if echo:
        print(f"blkfleet: {message}", file=sys.stderr)
    if _session is not None:
        return _session.failed(code, message, **details)
    return codes.exit_code(code)


def json_option(parser, what, stdout_flag=False):
    """``--json FILE`` (repeatable): write ``what`` to FILE; ``-`` answers in the protocol on stdout instead.
    With ``stdout_flag``, a bare ``--json`` keeps its older meaning: the document alone on stdout."""
    extra = {"nargs": "?", "const": ""} if stdout_flag else {}
    bare = " (alone: the document on stdout)" if stdout_flag else ""
    parser.add_argument("--json", action="append", default=[], metavar="FILE", **extra,
                        help=f"write {what} to FILE{bare}; '-': the protocol document on stdout (docs/protocol.md); "
                        "repeatable")

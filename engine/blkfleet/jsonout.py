"""JSON output of the commands: ``--json FILE`` (repeatable), ``-`` for the protocol document on stdout."""

import json
import sys

from . import protocol
from .files import atomic_write


def write_json(dest, doc):
    """Write ``doc`` to each destination: a file; ``-``, the protocol's result (blkfleet.protocol); ``""`` (the
    bare ``--json`` flag of a listing), the document alone on stdout. ``dest`` is one of them or a list. A file is
    replaced atomically (``files.atomic_write``): a link planted at its path is replaced, never written through."""
    for one in [dest] if isinstance(dest, str) else dest:
        if one == "-" and protocol.put_result(doc):
            continue
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        if one in ("-", ""):
            sys.stdout.write(text)
        else:
            atomic_write(one, text)


def show(doc, indent=2):
    """A command whose output is its document: the protocol's result with ``--json -``, else printed."""
    if not protocol.put_result(doc):
        sys.stdout.write(json.dumps(doc, indent=indent, sort_keys=True) + "\n")


def files(dest):
    """The file destinations of a ``--json`` option (not ``-`` or the bare flag)."""
    return [d for d in ([dest] if isinstance(dest, str) else dest or []) if d not in ("-", "")]

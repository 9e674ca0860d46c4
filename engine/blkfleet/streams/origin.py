"""Where a directory of replay files came from: ``origin.json``, written by ``import`` and ``transform`` beside the
files they write, copied by ``bundle create`` into the manifest (``origin``), so a replay always says what it
replayed.

The document is the last step that made the files; each step names its inputs, and an input that had an origin
of its own carries it (``inputs[].origin``), so a chain import -> transform -> transform nests three deep::

    {"command": "transform", "inputs": [{"name": "imported", "bytes": null, "origin": {"command": "import", ...}}],
     "options": {"wrap": 268435456, ...}, "counts": {"ios": 1000, "wrapped": 873, ...}}

Only content: input names without their directories, option values, counts; no time, host or path, so the same
inputs and options always give the same document (and the same bundle id). Its shape is
``$defs/origin`` of manifest.schema.json, checked on reading and writing.
"""

import os

from ..bundle.schema import load_schema, problem
from ..errors import BlkfleetError
from ..files import read_json, write_json_file

FILE = "origin.json"
MAX_BYTES = 4 << 20
SCHEMA = "manifest.schema.json"


def step(command, inputs, options, counts):
    """One step: ``inputs`` [(name, bytes or None, origin or None)], ``options`` {name: value} (None values left
    out), ``counts`` {name: int}."""
    return {
        "command": command,
        "inputs": [{"name": name, "bytes": size, "origin": origin} for name, size, origin in inputs],
        "options": {k: v for k, v in sorted(options.items()) if v is not None and v != [] and v is not False},
        "counts": dict(sorted(counts.items())),
    }


def trouble(doc):
    """Why ``doc`` is not an origin (one line), or None."""
    defs = load_schema(SCHEMA)["$defs"]
    found = problem(doc, {"$ref": "#/$defs/origin", "$defs": defs})
    return found and "origin" + found[1:]


def write(directory, doc):
    found = trouble(doc)
    if found:
        raise BlkfleetError(f"cannot record the origin: {found}")
    write_json_file(os.path.join(directory, FILE), doc)


def read(directory):
    """The origin.json of a directory (checked), or None when it has none."""
    path = os.path.join(directory, FILE)
    if not os.path.lexists(path):
        return None
    doc = read_json(path, "origin", max_bytes=MAX_BYTES, nofollow=True)
    found = trouble(doc)
    if found:
        raise BlkfleetError(f"{path}: not a valid origin record: {found}")
    return doc

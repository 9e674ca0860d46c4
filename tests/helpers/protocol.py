"""The protocol document of a real ``blkfleet ... --json -`` run, checked against its schemas (docs/protocol.md).

``checked(stdout)`` parses stdout as exactly one JSON document and validates it twice, with the ``jsonschema``
package and with the engine's own stdlib checker (blkfleet.bundle.schema): the envelope against
protocol.schema.json, its ``result`` against the schema of its command (schemas/commands.json).
"""

import json
import subprocess
import sys

import jsonschema

from blkfleet import protocol
from blkfleet.bundle import schema as stdlib_schema
from helpers import ENV, SCHEMAS


def load(name):
    doc = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def validate(doc, name):
    """``doc`` against schemas/NAME with both checkers (each raises on a mismatch)."""
    schema = load(name)
    jsonschema.Draft202012Validator(schema).validate(doc)
    stdlib_schema.validate(doc, schema)


def result_schemas():
    """{command: schema file} of the results (schemas/commands.json)."""
    return json.loads((SCHEMAS / protocol.COMMANDS).read_text())


def checked(stdout, command=None, exit_code=None):
    """The one protocol document of ``stdout``, validated; ``command`` and ``exit_code`` checked when given."""
    doc, end = json.JSONDecoder().raw_decode(stdout)
    assert stdout[end:].strip() == "", f"more than one document on stdout: {stdout[end:end + 200]!r}"
    validate(doc, protocol.SCHEMA)
    if command is not None:
        assert doc["command"] == command, doc
    if exit_code is not None:
        assert doc["exit_code"] == exit_code, doc
    if doc["result"] is not None and doc["command"] in result_schemas():
        validate(doc["result"], result_schemas()[doc["command"]])
    return doc


def run(*args, timeout=120, **kwargs):
    """``python -m blkfleet ARGS --json -`` (before a ``--`` in ARGS) in a subprocess: (its protocol document,
    the CompletedProcess)."""
    args = [str(a) for a in args]
    at = args.index("--") if "--" in args else len(args)
    proc = subprocess.run([sys.executable, "-m", "blkfleet", *args[:at], "--json", "-", *args[at:]], env=ENV,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
    doc = checked(proc.stdout)
    assert doc["exit_code"] == proc.returncode, (doc, proc.stderr)
    return doc, proc

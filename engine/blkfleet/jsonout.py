"""JSON output of the commands (``--json FILE``, ``-`` for stdout)."""

import json
import sys


def write_json(dest, doc):
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if dest == "-":
        sys.stdout.write(text)
    else:
        with open(dest, "w") as f:
            f.write(text)

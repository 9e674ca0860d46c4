"""The trace files against their capture's own account: ``capture.json`` in the input directory.

``blkfleet capture stop`` leaves in capture.json, per ``DEV.blktrace.N`` file, the queued IOs (Q events), their
bytes and the file's size as the capture wrote them. A copy cut short (a fetch that hit ENOSPC, a file
truncated at 512 records) then differs from it: ``record`` refuses such a trace (exit 2) unless
``--accept-missing``, which converts what is there and reports the shortfall (``record --json``: ``capture``;
the bundle manifest: ``record.capture``). Without capture.json nothing is checked.

capture.json is input like any other: read at most MAX_STATE_BYTES, without following a link, and only the
per-file counters are used, each checked (its shape is not trusted, and its place may move: the counters are
looked for under ``summary.devices.DEV.files``, ``devices.DEV.files``, and as a ``files`` object by file name in
``summary`` or at the top). A capture.json that cannot be read,
or has no counters (a capture that never stopped), is a problem like a shortfall: the files cannot be vouched
for.
"""

import os
import re

from ..errors import BlkfleetError

STATE_FILE = "capture.json"
MAX_STATE_BYTES = 16 << 20
MAX_COUNT = (1 << 63) - 1
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
FILE_ENTRY = {"type": "object", "required": ["queued", "bytes", "file_bytes"],
              "properties": {"queued": _COUNT, "bytes": _COUNT, "file_bytes": _COUNT}}
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,99}\.blktrace\.[0-9]{1,5}")
ADVICE = "--accept-missing converts the files as they are"


def _counters(doc):
    """{file name: entry} from the first place holding per-file counters, or None."""
    for container in (doc.get("summary"), doc):
        if not isinstance(container, dict):
            continue
        found = {}
        devices = container.get("devices")
        for entry in devices.values() if isinstance(devices, dict) else ():
            files = entry.get("files") if isinstance(entry, dict) else None
            if isinstance(files, dict):
                found.update(files)
        if not found and isinstance(container.get("files"), dict):
            found = dict(container["files"])
        if found:
            return found
    return None


class CaptureCheck:
    """The comparison for one ``record`` run: ``before`` (sizes, nothing written yet), ``after`` each file is
    converted (queued IOs and bytes), then ``result()`` for the summary. Raises BlkfleetError on the first
    mismatch unless ``accept_missing``."""

    def __init__(self, input_dir, accept_missing):
        self.path = os.path.join(input_dir, STATE_FILE)
        self.accept_missing = accept_missing
        self.expected = {}
        self.problem = None
        self.shortfall = {}
        self.found = {"ios": 0, "bytes": 0}
        self.counted = set()
        # Imported here, when there is a capture.json: they cost the converter 10 ms of start-up otherwise.
        from ..bundle.schema import problem as schema_problem
        from ..files import read_json

        try:
            doc = read_json(self.path, "capture state", max_bytes=MAX_STATE_BYTES, nofollow=True)
        except BlkfleetError as e:
            self._problem(str(e))
            return
        counters = _counters(doc) if isinstance(doc, dict) else None
        if counters is None:
            self._problem(f"{self.path}: no per-file counters (the capture has not stopped, or this is not "
                          "what 'blkfleet capture stop' leaves)")
            return
        for name, entry in counters.items():
            trouble = None if FILE_NAME.fullmatch(name) else "not a DEV.blktrace.N name"
            trouble = trouble or schema_problem(entry, FILE_ENTRY)
            if trouble:
                shown = name if len(name) <= 120 and name.isprintable() else "(a long or unprintable name)"
                self._problem(f"{self.path}: the counters of {shown} are not valid: {trouble}")
                return
            self.expected[name] = entry

    @classmethod
    def load(cls, input_dir, accept_missing):
        """The check for a trace directory, or None when it holds no capture.json."""
        if not os.path.lexists(os.path.join(input_dir, STATE_FILE)):
            return None
        return cls(input_dir, accept_missing)

    def _problem(self, text):
        if not self.accept_missing:
            raise BlkfleetError(f"{text}; the trace files cannot be checked ({ADVICE})")
        self.problem = text[:1024]

    def _short(self, path, entry, ios=None, nbytes=None, size=None):
        name = os.path.basename(path)
        self.shortfall[name] = {
            "file": name, "expected_ios": entry and entry["queued"], "ios": ios,
            "expected_bytes": entry and entry["bytes"], "bytes": nbytes,
            "expected_file_bytes": entry and entry["file_bytes"], "file_bytes": size,
        }

    def before(self, plan):
        """Every file's size against capture.json, before anything is converted; ``plan``: [(device, paths)]."""
        if self.problem:
            return
        problems = []
        for dev, paths in plan:
            names = {os.path.basename(p) for p in paths}
            directory = os.path.dirname(paths[0]) if paths else "."
            for name in sorted(n for n in self.expected if n.rsplit(".blktrace.", 1)[0] == dev and n not in names):
                entry = self.expected[name]
                if entry["file_bytes"] or entry["queued"]:
                    path = os.path.join(directory, name)
                    self._short(path, entry)
                    problems.append(f"{path}: missing, capture.json says the capture wrote {entry['file_bytes']} "
                                    f"bytes ({entry['queued']} queued IOs)")
            for path in paths:
                entry = self.expected.get(os.path.basename(path))
                size = os.path.getsize(path)
                if entry is None:
                    if size:
                        self._short(path, None, size=size)
                        problems.append(f"{path}: {size} bytes, but capture.json does not list this file")
                elif size != entry["file_bytes"]:
                    self._short(path, entry, size=size)
                    problems.append(f"{path}: {size} bytes, capture.json says the capture wrote "
                                    f"{entry['file_bytes']}: truncated or incomplete trace")
        self._raise(problems)

    def after(self, path, summary):
        """One converted file's queued IOs and bytes against capture.json."""
        nbytes = summary.nbytes
        self.found["ios"] += summary.ios
        self.found["bytes"] += nbytes
        name = os.path.basename(path)
        self.counted.add(name)
        entry = self.expected.get(name)
        if self.problem or entry is None:
            return
        if (summary.ios, nbytes) != (entry["queued"], entry["bytes"]) or name in self.shortfall:
            size = os.path.getsize(path)
            self._short(path, entry, summary.ios, nbytes, size)
            self._raise([f"{path}: {summary.ios} queued IOs ({nbytes} bytes), capture.json says {entry['queued']} "
                         f"({entry['bytes']} bytes): the trace differs from what the capture wrote"])

    def _raise(self, problems):
        if problems and not self.accept_missing:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BlkfleetError(f"{problems[0]}{more} ({ADVICE})")

    def result(self, devices):
        """The ``capture`` object of the record summary (the manifest's ``record.capture``)."""
        mine = [e for n, e in self.expected.items() if n.rsplit(".blktrace.", 1)[0] in devices]
        expected = None if self.problem else {"ios": sum(e["queued"] for e in mine),
                                              "bytes": sum(e["bytes"] for e in mine)}
        complete = not self.problem and not self.shortfall
        return {"complete": complete, "accepted_missing": self.accept_missing and not complete,
                "expected": expected, "found": dict(self.found),
                "shortfall": [self.shortfall[n] for n in sorted(self.shortfall)], "problem": self.problem}

    def warning(self, devices):
        """One line for stderr when files were converted despite a shortfall, else None."""
        if self.problem:
            return f"converted without checking the files: {self.problem}"
        if self.shortfall:
            r = self.result(devices)
            return (f"{self.path}: converted despite a shortfall in {len(self.shortfall)} file(s): "
                    f"{r['found']['ios']} of {r['expected']['ios']} queued IOs (--accept-missing)")
        return None

"""The results store on the controller: every replay's results JSON, in an SQLite file (the default) or a
PostgreSQL database shared by many controllers (store_location: which; store_sqlite, store_postgresql: the
backends; store_schema: the tables and their migrations).

Every document is checked against schemas/results.schema.json before it is stored; documents stored by earlier
versions, which did not check (``"total": null`` was stored and then broke every report), are checked when the
store is opened, the outcome kept unless it was opened read-only (``meta.checked_through``: the last run id
checked). A rejected run is left out of listings, baselines, ``regress`` and ``report``, with one warning line;
``results show`` still prints it.

Documents of both versions are stored as written (``blkfleet-results/1`` against its own schema); whoever
needs the version 2 shape reads them through ``document.upgrade``.

Adding is safe from many processes at once: each run is one transaction, and a document is stored once however
many add it (its sha256 is unique). Times are the documents' own ISO 8601 strings (UTC from the engine), which
sort as text.
"""

import csv
import hashlib
import io
import json
import sys

from ..bundle.schema import load_schema
from ..bundle.schema import problem as schema_problem
from ..errors import BlkfleetError
from ..files import loads_json, read_json
from .document import SCHEMA, SCHEMA_V1, SCHEMAS
from .store_location import DEFAULT_DB, default_db, is_postgresql, shown
from .store_schema import SCHEMA_VERSION, migrate, version
from .store_sqlite import SQLiteBackend

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Run", "Store", "check_document", "default_db", "document_problem",
           "load_document", "parse_tag"]

_UPSERT_META = ("INSERT INTO meta (key, value) VALUES ('checked_through', ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value")


def document_problem(doc):
    """Why ``doc`` is not a results document that matches the schema of its version (results.schema.json, or
    results-v1.schema.json), in one line, or None."""
    if not isinstance(doc, dict):
        return "not a results document (a JSON object is expected)"
    if not isinstance(doc.get("schema"), str) or doc["schema"] not in SCHEMAS:
        shown = doc.get("schema") if isinstance(doc.get("schema"), str) else type(doc.get("schema")).__name__
        return f"not a blkfleet results document (schema {shown[:80]!r}, expected {SCHEMA!r} or {SCHEMA_V1!r})"
    trouble = schema_problem(doc, load_schema(SCHEMAS[doc["schema"]]))
    if trouble:
        return f"not a valid results document: {trouble}"
    if not doc["devices"]:
        return "not a valid results document: it has no devices"
    return None


def check_document(doc, where):
    """Raise BlkfleetError (one line naming ``where``) unless ``doc`` is a valid results document."""
    trouble = document_problem(doc)
    if trouble:
        raise BlkfleetError(f"{where}: {trouble}")


def load_document(path):
    doc = read_json(path, "results JSON")
    check_document(doc, path)
    return doc


def parse_tag(text):
    """``key=value`` -> (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BlkfleetError(f"invalid tag {text!r} (expected key=value)")
    return key.strip(), value.strip()


class Run:
    """One stored run, as read back."""

    def __init__(self, row, tags, invalid=None):
        self.id = row["id"]
        self.host = row["host"]
        self.started = row["started"]
        self.finished = row["finished"]
        self.engine_version = row["engine_version"]
        self.kernel = row["kernel"]
        self.bundle_id = row["bundle_id"]
        self.source = row["source"]
        self.added = row["added"]
        text = row["doc"]
        self.doc = loads_json(text, f"run {self.id}", "the stored results document") if isinstance(
            text, (str, bytes)) else None
        self.tags = tags
        self.invalid = invalid  # why the document is not a valid results document (None: it is)

    def summary(self):
        devices = self.doc.get("devices") if isinstance(self.doc, dict) else None
        out = {"id": self.id, "host": self.host, "started": self.started, "finished": self.finished,
               "engine_version": self.engine_version, "kernel": self.kernel, "bundle_id": self.bundle_id,
               "source": self.source, "added": self.added, "tags": dict(self.tags),
               "devices": {d: v.get("target") if isinstance(v, dict) else None
                           for d, v in sorted(devices.items())} if isinstance(devices, dict) else {}}
        if self.invalid:
            out["invalid"] = self.invalid
        return out


class Store:
    """The results store at ``location`` (default: ``$BLKFLEET_DB``, else results/blkfleet.sqlite): an SQLite
    file, created with its directory on first use, or a ``postgresql://`` URL. ``path``: the location as given;
    ``shown``: as messages show it (without a password).

    ``create`` False: the store must exist (a location without its tables, an empty file included, is refused and
    left as it is). ``read_only`` (commands that only read; implies not ``create``): an SQLite file is opened
    read-only, and reopened to write only to bring a store of an older schema up to date (store_schema)."""

    def __init__(self, location=None, create=True, warn=None, read_only=False):
        self.path = location or default_db()
        self.shown = shown(self.path)
        self.warn = warn or (lambda line: print(f"blkfleet: warning: {line}", file=sys.stderr))
        self._warned = False
        create = create and not read_only
        if is_postgresql(self.path):
            from .store_postgresql import PostgreSQLBackend

            self.backend = PostgreSQLBackend(self.path, create)
        else:
            self.backend = SQLiteBackend(self.path, create, writable=not read_only)
        self.db = self.backend
        try:
            found = version(self.backend)
            if not create and not found:
                raise self._no_store()
            if 0 < found < SCHEMA_VERSION and not self.backend.writable:  # upgraded once, by whoever opens it
                self.backend.close()
                self.backend = self.db = SQLiteBackend(self.path, False)
            trouble = migrate(self.backend, self.shown)
            if trouble:
                raise BlkfleetError(trouble)
            self.rejected = self._screen()
        except self.backend.Error as e:
            self.backend.close()
            detail = " ".join(str(e).split())[:300]
            raise BlkfleetError(f"{self.shown}: not a usable results store: {detail}") from None
        except BaseException:
            self.backend.close()
            raise

    def _no_store(self):
        """The error of a command that needs a store where there are no blkfleet tables."""
        if is_postgresql(self.path):
            return BlkfleetError(f"{self.shown}: no results store (add results first: blkfleet results add)",
                                 code="not_found")
        if self.backend.empty():
            return BlkfleetError(f"{self.shown}: no results store: an empty database (add results first: blkfleet "
                                 "results add)", code="not_found")
        return BlkfleetError(f"{self.shown}: not a results store (an SQLite database without blkfleet's tables)")

    def _screen(self):
        """{run id: reason} of the stored documents that are not valid results documents; the runs stored since
        the last screening are checked now (and the outcome kept, unless the store was opened read-only or cannot be
        written)."""
        rejected = {r[0]: r[1] for r in self.db.execute("SELECT run_id, reason FROM rejected")}
        got = self.db.execute("SELECT value FROM meta WHERE key = 'checked_through'").fetchone()
        through = int(got[0]) if got and got[0].isdigit() else 0
        found = {}
        last = through
        for run_id, text in self.db.execute("SELECT id, doc FROM runs WHERE id > ? ORDER BY id", (through,)):
            last = run_id
            try:
                trouble = document_problem(loads_json(text, f"run {run_id}")) if isinstance(text, (str, bytes)) \
                    else "not JSON text"
            except BlkfleetError as e:
                trouble = str(e)
            if trouble:
                found[run_id] = trouble
        if last != through and self.backend.writable:
            def keep():
                self.db.executemany("INSERT INTO rejected (run_id, reason) VALUES (?, ?) ON CONFLICT (run_id) "
                                    "DO UPDATE SET reason = excluded.reason", sorted(found.items()))
                self.db.execute(_UPSERT_META, (str(last),))

            try:
                self.backend.transaction(keep)
            except self.backend.Error as e:
                if not self.backend.readonly(e):
                    raise  # a read-only store is checked again next time
        rejected.update(found)
        self._checked_through = last
        return rejected

    def _left_out(self, run_ids):
        """Warn once (one line) that rejected runs are left out."""
        if run_ids and not self._warned:
            self._warned = True
            shown = "; ".join(f"run {i}: {self.rejected[i]}" for i in sorted(run_ids)[:3])
            self.warn(f"{self.shown}: {len(run_ids)} stored run(s) left out, not valid results documents ({shown}"
                      + ("; ..." if len(run_ids) > 3 else "") + ")")

    def close(self):
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _tb):
        """Close the store; a database error inside the ``with`` (a server gone, a disk full) becomes one line."""
        self.close()
        if isinstance(error, self.backend.Error):
            detail = " ".join(str(error).split())[:300]
            raise BlkfleetError(f"{self.shown}: results store failed: {detail}") from None

    # --- adding ---------------------------------------------------------------------------------------------

    def add(self, doc, tags=(), bundle_id=None, source=None, checked=False):
        """Store a results document; returns (run id, True if new / False if already stored).

        Tags given for an already stored document are added to it (a tag key's value is replaced). ``checked``:
        the caller has already checked the document (``load_document``).
        """
        if not checked:
            check_document(doc, source or "results document")
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        bundle_id = bundle_id or doc.get("bundle_id")
        return self.backend.transaction(lambda: self._add(doc, canonical, digest, tags, bundle_id, source))

    def _add(self, doc, canonical, digest, tags, bundle_id, source):
        row = self.db.execute("SELECT id FROM runs WHERE sha256 = ?", (digest,)).fetchone()
        run_id = None
        if row is None:  # a concurrent writer may store the same document first: then it is not new here
            run_id = self.backend.insert_new(
                "INSERT INTO runs (sha256, host, started, finished, engine_version, kernel, bundle_id, source, "
                "doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (digest, doc["host"], doc["started"], doc.get("finished"), doc.get("engine_version"),
                 doc.get("kernel"), bundle_id, source, canonical))
            if run_id is None:
                row = self.db.execute("SELECT id FROM runs WHERE sha256 = ?", (digest,)).fetchone()
        new = run_id is not None
        if new:
            self.db.executemany(
                "INSERT INTO results (run_id, device, target, host, bundle_id, engine_version, started, mode) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, name, dev.get("target"), doc["host"], bundle_id, doc.get("engine_version"),
                  doc["started"], doc.get("mode") or "timed") for name, dev in sorted(doc["devices"].items())])
            if self._checked_through == run_id - 1:  # checked above: no need to screen it when next opened
                self.db.execute(_UPSERT_META, (str(run_id),))
                self._checked_through = run_id
        else:
            run_id = row[0]
            if bundle_id:
                self.db.execute("UPDATE runs SET bundle_id = ? WHERE id = ? AND bundle_id IS NULL",
                                (bundle_id, run_id))
                self.db.execute("UPDATE results SET bundle_id = ? WHERE run_id = ? AND bundle_id IS NULL",
                                (bundle_id, run_id))
        self.db.executemany("INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT (run_id, key) "
                            "DO UPDATE SET value = excluded.value", [(run_id, k, v) for k, v in tags])
        return run_id, new

    # --- reading --------------------------------------------------------------------------------------------

    def _tags(self, run_id):
        return sorted((r["key"], r["value"]) for r in
                      self.db.execute("SELECT key, value FROM tags WHERE run_id = ?", (run_id,)))

    def get(self, run_id):
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise BlkfleetError(f"no run {run_id} in {self.shown}", code="not_found")
        return Run(row, self._tags(run_id), self.rejected.get(run_id))

    def rows(self, host=None, device=None, tags=(), bundle_id=None, run_ids=None, mode=None):
        """(run id, device, target, host, started, bundle id, engine version, mode) rows matching the filters,
        oldest first. ``mode``: the replay's (``timed``, ``no-stall``, ``load``, ``dependency``), part of what a
        run is: a baseline never mixes modes."""
        where, params = [], []
        if host:
            where.append("r.host = ?")
            params.append(host)
        if device:
            where.append("(r.device = ? OR r.target = ?)")
            params += [device, device]
        if bundle_id:
            where.append("r.bundle_id = ?")
            params.append(bundle_id)
        for k, v in tags:
            where.append("EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.run_id AND t.key = ? AND t.value = ?)")
            params += [k, v]
        if run_ids is not None:
            ids = [int(i) for i in run_ids]
            where.append(f"r.run_id IN ({', '.join('?' * len(ids)) or 'NULL'})")
            params += ids
        if mode:
            where.append("r.mode = ?")
            params.append(mode)
        sql = ("SELECT r.run_id, r.device, r.target, r.host, r.started, r.bundle_id, r.engine_version, "
               "r.mode FROM results r"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.started, r.run_id, r.device")
        rows = [dict(row) for row in self.db.execute(sql, params)]
        self._left_out({r["run_id"] for r in rows if r["run_id"] in self.rejected})
        return [r for r in rows if r["run_id"] not in self.rejected]

    def runs(self, **filters):
        """Stored runs with at least one (run, device) row matching the filters, oldest first."""
        ids = []
        for row in self.rows(**filters):
            if row["run_id"] not in ids:
                ids.append(row["run_id"])
        return [self.get(i) for i in ids]

    def listing(self, **filters):
        """One dict per (run, device): the indexed columns, tags and headline figures of the device."""
        out = []
        cache = {}
        for row in self.rows(**filters):
            run = cache.get(row["run_id"]) or cache.setdefault(row["run_id"], self.get(row["run_id"]))
            dev = run.doc["devices"].get(row["device"]) or {}
            out.append({
                "run": row["run_id"], "host": row["host"], "device": row["device"], "target": row["target"],
                "started": row["started"], "bundle_id": row["bundle_id"], "engine_version": row["engine_version"],
                "tags": dict(run.tags), "iterations": len(run.doc["per_iteration"]), "ios": dev.get("ios"),
                "iops": dev.get("iops"), "mb_s": dev.get("mb_s"),
                "latency_p50_us": (dev.get("latency_us") or {}).get("p50"),
                "latency_p99_us": (dev.get("latency_us") or {}).get("p99"),
                "lateness_p99_us": (dev.get("lateness_us") or {}).get("p99"),
                "errors": (dev.get("errors") or {}).get("count"), "interrupted": run.doc.get("interrupted", False),
            })
        return out

    def export_json(self):
        runs = self.runs()
        return {"format": "blkfleet-results-export/1",
                "runs": [{**r.summary(), "document": r.doc} for r in runs],
                "baselines": self.baselines()}

    def export_csv(self):
        rows = self.listing()
        buf = io.StringIO()
        fields = ["run", "host", "device", "target", "started", "bundle_id", "engine_version", "tags", "iterations",
                  "ios", "iops", "mb_s", "latency_p50_us", "latency_p99_us", "lateness_p99_us", "errors",
                  "interrupted"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "tags": ";".join(f"{k}={v}" for k, v in sorted(r["tags"].items()))})
        return buf.getvalue()

    # --- baselines ------------------------------------------------------------------------------------------

    def set_baseline(self, name, run_ids=None, last=None, host=None, device=None, tags=(), mode=None):
        """Define (or redefine) a baseline: the (run, device) rows of ``run_ids``, or of the ``last`` N runs of
        each (host, device) — both narrowed by ``host``/``device``/``tags``/``mode``. Returns the member rows.
        Rows of more than one replay mode are refused: a baseline never mixes modes."""
        if not name:
            raise BlkfleetError("a baseline needs a name")
        if (run_ids is None) == (last is None):
            raise BlkfleetError("baseline set: give either --run ID... or --last N")
        if run_ids is not None:
            known = {r["run_id"] for r in self.rows(run_ids=run_ids)}
            missing = [str(i) for i in run_ids if int(i) not in known]
            if missing:
                raise BlkfleetError(f"no run {', '.join(missing)} in {self.shown}", code="not_found")
            rows = self.rows(run_ids=run_ids, host=host, device=device, tags=tags, mode=mode)
        else:
            if last < 1:
                raise BlkfleetError("--last must be at least 1")
            groups = {}
            for row in self.rows(host=host, device=device, tags=tags, mode=mode):
                groups.setdefault((row["host"], row["device"]), []).append(row)
            rows = [r for g in groups.values() for r in g[-last:]]
        if not rows:
            raise BlkfleetError("baseline set: no stored results match")
        modes = sorted({r["mode"] for r in rows})
        if len(modes) > 1:
            raise BlkfleetError("baseline set: a baseline never mixes replay modes, and these runs were replayed in "
                                + ", ".join(f"{m} (run {min(r['run_id'] for r in rows if r['mode'] == m)})"
                                            for m in modes) + ": choose one with --mode")

        def define():
            self.db.execute("DELETE FROM baselines WHERE name = ?", (name,))
            self.db.execute("DELETE FROM baseline_members WHERE name = ?", (name,))
            self.db.execute("INSERT INTO baselines (name) VALUES (?)", (name,))
            self.db.executemany("INSERT INTO baseline_members (name, run_id, device) VALUES (?, ?, ?)",
                                [(name, r["run_id"], r["device"]) for r in rows])

        self.backend.transaction(define)
        return rows

    def baseline(self, name):
        """Member rows of a baseline (as ``rows``), oldest first; BlkfleetError if unknown."""
        if self.db.execute("SELECT 1 FROM baselines WHERE name = ?", (name,)).fetchone() is None:
            raise BlkfleetError(f"no baseline {name!r} in {self.shown} (blkfleet results baseline set)",
                                code="not_found")
        members = {(r[0], r[1]) for r in
                   self.db.execute("SELECT run_id, device FROM baseline_members WHERE name = ?", (name,))}
        return [r for r in self.rows(run_ids=sorted({m[0] for m in members})) if (r["run_id"], r["device"]) in members]

    def baselines(self):
        out = []
        for b in self.db.execute("SELECT name, created FROM baselines ORDER BY name").fetchall():
            members = [m for m in self.db.execute(
                "SELECT m.run_id, m.device, r.host FROM baseline_members m JOIN results r "
                "ON r.run_id = m.run_id AND r.device = m.device WHERE m.name = ? ORDER BY m.run_id, m.device",
                (b["name"],)).fetchall() if m[0] not in self.rejected]
            out.append({"name": b["name"], "created": b["created"],
                        "members": [{"run": m[0], "device": m[1], "host": m[2]} for m in members]})
        return out

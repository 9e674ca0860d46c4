"""The tables of the results store, one schema for both backends, built by numbered migrations.

``meta.schema_version`` holds the number of the last migration applied. Opening a store applies the missing
ones in one transaction, under a lock (SQLite's write lock, a PostgreSQL advisory lock), so that controllers
opening a new store at the same moment create it once. A store of a later version than this blkfleet knows is
refused rather than misread. A migration is a list of statements written once, in the SQL both backends accept;
``{id}`` (the auto-numbered key), ``{now}`` (the current UTC time as ISO 8601 text) and ``{doc_mode}`` (a
stored document's ``mode``) are filled per backend.

Tables:

- ``runs``: one row per results document: its full JSON (``doc``), a sha256 of its canonical JSON (adding the
  same document again returns the stored run), host, start/finish time, engine version, kernel, bundle id,
  source file and when it was added.
- ``results``: one row per (run, device): the recorded device name, its target, and the run's indexed columns
  repeated (host, bundle id, engine version, started, replay mode) so that listing and selection need no JSON.
- ``tags``: (run, key, value), several per run.
- ``baselines`` / ``baseline_members``: a named baseline is a set of (run, device) rows.
- ``rejected``: stored runs whose document is not a valid results document, with the reason.
"""

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id {id},
    sha256 TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    engine_version TEXT,
    kernel TEXT,
    bundle_id TEXT,
    source TEXT,
    added TEXT NOT NULL DEFAULT {now},
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    device TEXT NOT NULL,
    target TEXT,
    host TEXT NOT NULL,
    bundle_id TEXT,
    engine_version TEXT,
    started TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE INDEX IF NOT EXISTS results_host_device ON results (host, device, started);
CREATE INDEX IF NOT EXISTS results_bundle ON results (bundle_id);
CREATE INDEX IF NOT EXISTS results_started ON results (started);
CREATE TABLE IF NOT EXISTS tags (
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS tags_key_value ON tags (key, value);
CREATE TABLE IF NOT EXISTS rejected (
    run_id BIGINT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baselines (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL DEFAULT {now}
);
CREATE TABLE IF NOT EXISTS baseline_members (
    name TEXT NOT NULL REFERENCES baselines(name) ON DELETE CASCADE,
    run_id BIGINT NOT NULL,
    device TEXT NOT NULL,
    PRIMARY KEY (name, run_id, device),
    FOREIGN KEY (run_id, device) REFERENCES results(run_id, device) ON DELETE CASCADE
)
"""

# Version 2: the replay's mode (timed, no-stall, load, dependency) on each (run, device) row, part of what a run
# is (a baseline never mixes modes), taken from the stored documents; those without one were replayed timed.
_V2 = """
ALTER TABLE results ADD COLUMN mode TEXT NOT NULL DEFAULT 'timed';
UPDATE results SET mode = COALESCE((SELECT {doc_mode} FROM runs WHERE runs.id = results.run_id), 'timed');
CREATE INDEX IF NOT EXISTS results_mode ON results (host, device, mode, started)
"""

# (version reached, statements). Version 1 is the schema SQLite stores had before there were two backends; its
# statements are idempotent, so that such a store, already at version 1, is never touched by it.
MIGRATIONS = ((1, _V1), (2, _V2))
SCHEMA_VERSION = MIGRATIONS[-1][0]


def statements(text, values):
    return [s.strip().format(**values) for s in text.split(";") if s.strip()]


def version(backend):
    """The store's schema version (0: no tables yet)."""
    if not backend.has_table("meta"):
        return 0
    got = backend.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(got[0]) if got and str(got[0]).isdigit() else 0


def migrate(backend, where):
    """Bring the store to SCHEMA_VERSION; BlkfleetError-worthy problems are returned as text (None: fine)."""
    found = version(backend)
    if found > SCHEMA_VERSION:
        return f"{where}: results store version {found}, this blkfleet reads up to {SCHEMA_VERSION}"
    if found == SCHEMA_VERSION:
        return None

    def apply():
        backend.lock_schema()
        now = version(backend)  # another controller may have migrated it meanwhile
        for reached, text in MIGRATIONS:
            if reached > now:
                for sql in statements(text, backend.ddl_values):
                    backend.execute(sql)
        backend.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE "
                        "SET value = excluded.value", (str(SCHEMA_VERSION),))

    backend.transaction(apply)
    return None

"""manifest.json against its JSON Schema with the real ``jsonschema``, and the engine's stdlib checker agreeing."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from blkfleet.bundle import schema as mini
from blkfleet.bundle.manifest import SCHEMA_FILE
from helpers.bundles import manifest_of

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "engine" / "blkfleet" / "schemas" / SCHEMA_FILE


@pytest.fixture(scope="module")
def schema():
    doc = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return doc


def test_shipped_schema_is_the_one_loaded(schema):
    assert mini.load_schema(SCHEMA_FILE) == schema


def test_manifest_validates(bundle_file, schema):
    m = manifest_of(bundle_file)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(m)
    mini.validate(m, schema)


def _set(doc, path, value):
    *parents, last = path
    for p in parents:
        doc = doc[p]
    if value is KeyError:
        del doc[last]
    else:
        doc[last] = value


MUTATIONS = [
    (("format_version",), 4),
    (("format",), "tarball"),
    (("bundle_id",), "0" * 63),
    (("bundle_id",), KeyError),
    (("created_by", "version"), ""),
    (("source_host",), 7),
    (("source_host",), ""),
    (("devices",), []),
    (("devices", 0, "dev"), "7,1"),
    (("devices", 0, "size"), -1),
    (("devices", 0, "logical_block_size"), 0),
    (("devices", 0, "ops", "trim"), {"ios": 0, "bytes": 0}),
    (("devices", 0, "ops", "read", "ios"), True),
    (("devices", 0, "ops", "read", "ios"), 1.5),
    (("capture_window", "first_ns"), "now"),
    (("record", "format"), "fio"),
    (("record", "extra"), 1),
    (("replay", "directory"), "../replay"),
    (("engine", "path"), "../engine.pyz"),
    (("engine", "size"), 0),
    (("files", 0, "path"), "../../etc/passwd"),
    (("files", 0, "path"), "replay/a/b"),
    (("files", 0, "path"), "replay/.hidden"),
    (("files", 1, "sha256"), "A" * 64),
    (("files", 1, "format"), "zip"),
    (("files", 1, "cpu"), -1),
    (("files", 1, "ops"), KeyError),
    (("totals", "files"), 0),
    (("unknown",), {}),
]


@pytest.mark.parametrize("path, value", MUTATIONS, ids=lambda x: str(x))
def test_stdlib_checker_agrees_with_jsonschema(bundle_file, schema, path, value):
    m = copy.deepcopy(manifest_of(bundle_file))
    _set(m, path, value)
    assert not jsonschema.Draft202012Validator(schema).is_valid(m)
    with pytest.raises(mini.SchemaError):
        mini.validate(m, schema)


def test_nullable_fields_accepted_by_both(bundle_file, schema):
    m = manifest_of(bundle_file)
    m["source_host"] = None
    m["devices"][0].update(dev=None, size=None, logical_block_size=None)
    m["capture_window"].update(first_ns=None, last_ns=None, span_ns=0)
    m["record"]["options"] = {"max_bunch_time": 10_000_000}
    jsonschema.Draft202012Validator(schema).validate(m)
    mini.validate(m, schema)


def test_checker_names_the_place(bundle_file, schema):
    m = manifest_of(bundle_file)
    m["files"][1]["ops"]["write"]["bytes"] = -5
    with pytest.raises(mini.SchemaError) as e:
        mini.validate(m, schema)
    assert str(e.value) == "$.files[1].ops.write.bytes: -5 is less than 0"


def test_checker_refuses_unknown_keywords():
    with pytest.raises(ValueError, match="not supported"):
        mini.validate({}, {"type": "object", "if": {}})


def _nodes(node):
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@pytest.mark.parametrize("name", ["manifest.schema.json", "results.schema.json", "record-summary.schema.json"])
def test_shipped_schemas_stay_within_the_checker(name):
    """Every shipped schema is valid JSON Schema and uses only what the stdlib checker interprets, with anchored
    patterns (a new keyword would otherwise be a ValueError on a target)."""
    doc = mini.load_schema(name)
    jsonschema.Draft202012Validator.check_schema(doc)
    for node in _nodes(doc):
        if "pattern" in node and isinstance(node["pattern"], str):
            assert node["pattern"].startswith("^") and node["pattern"].endswith("$"), node["pattern"]
    schema_nodes = [doc] + [v for n in _nodes(doc) for k, v in n.items() if k in (
        "items", "additionalProperties", "propertyNames", "not") and isinstance(v, dict)]
    schema_nodes += [s for n in _nodes(doc) for k in ("properties", "$defs", "patternProperties")
                     if isinstance(n.get(k), dict) for s in n[k].values() if isinstance(s, dict)]
    schema_nodes += [s for n in _nodes(doc) for k in ("allOf", "anyOf", "oneOf") if isinstance(n.get(k), list)
                     for s in n[k]]
    for node in schema_nodes:
        assert set(node) <= mini.SUPPORTED, sorted(set(node) - mini.SUPPORTED)


def test_record_summary_schema_accepts_what_record_writes(native_dir):
    doc = json.loads((native_dir.parent / "rec.json").read_text())
    assert doc["capture"] is None
    jsonschema.Draft202012Validator(mini.load_schema("record-summary.schema.json")).validate(doc)
    mini.validate(doc, mini.load_schema("record-summary.schema.json"))

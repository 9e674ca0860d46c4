"""A stdlib checker for the subset of JSON Schema (draft 2020-12) that blkfleet's own schemas use.

Targets have no ``jsonschema`` package, yet a bundle's manifest must be checked there before anything runs. This
interprets the shipped schema file itself (one source of truth); the tests check that ``jsonschema`` agrees.
A keyword outside the subset is a programming error, never silently ignored.
"""

import json
import pkgutil
import re

from ..errors import BlkfleetError

ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}
SUPPORTED = {"$ref", "type", "const", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
             "minItems", "maxItems", "properties", "required", "additionalProperties", "items"} | ANNOTATIONS
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaError(BlkfleetError):
    """A document does not match its schema: ``where`` is a path such as ``files[2].sha256``."""

    def __init__(self, where, problem):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def load_schema(name):
    """A schema shipped in ``blkfleet/schemas`` (works from a directory and from engine.pyz)."""
    data = pkgutil.get_data("blkfleet", f"schemas/{name}")
    if data is None:
        raise BlkfleetError(f"schema {name} is missing from the engine")
    return json.loads(data.decode("utf-8"))


def validate(doc, schema):
    """Raise SchemaError naming the first place where ``doc`` breaks ``schema``."""
    _check(doc, schema, schema, "$")


def _resolve(root, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r} (only local #/... references)")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _key(where, name):
    return f"{where}.{name}" if re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", name) else f"{where}[{name!r}]"


def _check(value, schema, root, where):
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} not supported by blkfleet.bundle.schema")
    if "$ref" in schema:
        _check(value, _resolve(root, schema["$ref"]), root, where)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[n](value) for n in names):
            raise SchemaError(where, f"{_short(value)} is not of type {' or '.join(names)}")
    if "const" in schema and not _same(value, schema["const"]):
        raise SchemaError(where, f"{_short(value)} is not {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        raise SchemaError(where, f"{_short(value)} is not one of {json.dumps(schema['enum'])}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(where, f"{_short(value)} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(where, f"{_short(value)} is shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(where, f"{_short(value)} is longer than {schema['maxLength']}")
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(where, f"{value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(where, f"{value} is more than {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(where, f"has {len(value)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(where, f"has {len(value)} items, more than {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, f"{where}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise SchemaError(where, f"required property {name!r} is missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name in sorted(value):
            if name in props:
                _check(value[name], props[name], root, _key(where, name))
            elif extra is False:
                raise SchemaError(where, f"unexpected property {name!r}")
            elif isinstance(extra, dict):
                _check(value[name], extra, root, _key(where, name))


def _same(a, b):
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."

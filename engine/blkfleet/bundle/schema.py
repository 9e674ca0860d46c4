"""A stdlib checker for the subset of JSON Schema (draft 2020-12) that blkfleet's own schemas use.

Targets have no ``jsonschema`` package, yet a bundle's manifest must be checked there before anything runs, and
the controller checks every results document before it is stored. This interprets the shipped schema files
themselves (one source of truth); the tests check that ``jsonschema`` agrees. A keyword outside the subset is a
programming error, never silently ignored.

Two points are stricter than Python's ``jsonschema`` package, as JSON Schema itself is: a ``pattern`` is an
ECMA-262 expression, whose ``$`` matches only at the very end (Python's ``$`` also matches before a final
newline, so ``"7:1\\n"`` would pass ``^[0-9]+:[0-9]+$``); our patterns are all anchored (``^...$``, checked)
and matched with ``re.fullmatch``. A JSON number is finite: the NaN and infinities that Python's json module
reads from ``NaN``, ``Infinity`` or ``1e400`` are not numbers here, wherever they are in the document. A document
nested more than MAX_DEPTH levels deep is refused before it is walked (ours are a few levels deep; a deeper one
could break ``json.dumps`` of a document that embeds it). And an ``integer`` is written without a
fraction (``3``, not ``3.0``), as blkfleet writes its documents.
"""

import functools
import json
import math
import pkgutil
import re

from ..errors import BlkfleetError

ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples", "format",
               "deprecated", "readOnly", "writeOnly"}
SUPPORTED = {"$ref", "type", "const", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "properties",
             "required", "additionalProperties", "patternProperties", "propertyNames", "minProperties",
             "maxProperties", "items", "allOf", "anyOf", "oneOf", "not"} | ANNOTATIONS


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


MAX_DEPTH = 64


class SchemaError(BlkfleetError):
    """A document does not match its schema: ``where`` is a path such as ``files[2].sha256``."""

    def __init__(self, where, problem):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


@functools.cache
def load_schema(name):
    """A schema shipped in ``blkfleet/schemas`` (works from a directory and from engine.pyz); read once, shared:
    do not change it."""
    data = pkgutil.get_data("blkfleet", f"schemas/{name}")
    if data is None:
        raise BlkfleetError(f"schema {name} is missing from the engine")
    return json.loads(data.decode("utf-8"))


def validate(doc, schema):
    """Raise SchemaError naming the first place where ``doc`` breaks ``schema``."""
    _check_plain(doc)
    _check(doc, schema, schema, "$")


def _check_plain(doc):
    """No level deeper than MAX_DEPTH and no NaN or infinity, anywhere (walked without recursion)."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError("$", f"holds {json.dumps(value)}, which is not a JSON number")
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise SchemaError("$", f"is nested more than {MAX_DEPTH} levels deep")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def problem(doc, schema):
    """Why ``doc`` breaks ``schema`` (one line), or None."""
    try:
        validate(doc, schema)
    except SchemaError as e:
        return str(e)
    return None


def _resolve(root, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r} (only local #/... references)")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _key(where, name):
    return f"{where}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"{where}[{_short(name)}]"


def _pattern(pattern):
    """The compiled ``pattern``; it must be anchored at both ends (see the module docstring)."""
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise ValueError(f"schema pattern {pattern!r} is not anchored (^...$)")
    return re.compile(pattern)


def _check(value, schema, root, where):
    if schema is True:
        return
    if schema is False:
        raise SchemaError(where, "no value is allowed here")
    if not SUPPORTED.issuperset(schema):
        raise ValueError(f"schema keyword(s) {sorted(set(schema) - SUPPORTED)} not supported by "
                         "blkfleet.bundle.schema")
    if "$ref" in schema:
        _check(value, _resolve(root, schema["$ref"]), root, where)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[n](value) for n in names):
            raise SchemaError(where, f"{_short(value)} is not of type {' or '.join(names)}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(where, f"{value} is not a JSON number")
    if "const" in schema and not _same(value, schema["const"]):
        raise SchemaError(where, f"{_short(value)} is not {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        raise SchemaError(where, f"{_short(value)} is not one of {json.dumps(schema['enum'])}")
    for keyword in ("allOf", "anyOf", "oneOf", "not"):
        if keyword in schema:
            _combined(keyword, value, schema[keyword], root, where)
    if isinstance(value, str):
        _check_string(value, schema, where)
    if _number(value):
        _check_number(value, schema, where)
    if isinstance(value, list):
        _check_array(value, schema, root, where)
    if isinstance(value, dict):
        _check_object(value, schema, root, where)


def _combined(keyword, value, sub, root, where):
    if keyword == "not":
        if _matches(value, sub, root, where):
            raise SchemaError(where, f"{_short(value)} matches a schema it must not match")
        return
    if keyword == "allOf":
        for s in sub:
            _check(value, s, root, where)
        return
    matched = sum(1 for s in sub if _matches(value, s, root, where))
    if keyword == "anyOf" and not matched:
        raise SchemaError(where, f"{_short(value)} matches none of the allowed forms")
    if keyword == "oneOf" and matched != 1:
        raise SchemaError(where, f"{_short(value)} matches {matched} of the forms, not exactly one")


def _matches(value, schema, root, where):
    try:
        _check(value, schema, root, where)
    except SchemaError:
        return False
    return True


def _check_string(value, schema, where):
    if "pattern" in schema and not _pattern(schema["pattern"]).fullmatch(value):
        raise SchemaError(where, f"{_short(value)} does not match {schema['pattern']}")
    if len(value) < schema.get("minLength", 0):
        raise SchemaError(where, f"{_short(value)} is shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaError(where, f"{_short(value)} is longer than {schema['maxLength']}")


def _check_number(value, schema, where):
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(where, f"{_short(value)} is less than {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(where, f"{_short(value)} is more than {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise SchemaError(where, f"{_short(value)} is not more than {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise SchemaError(where, f"{_short(value)} is not less than {schema['exclusiveMaximum']}")


def _check_array(value, schema, root, where):
    if len(value) < schema.get("minItems", 0):
        raise SchemaError(where, f"has {len(value)} items, fewer than {schema['minItems']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaError(where, f"has {len(value)} items, more than {schema['maxItems']}")
    if "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]")
    if schema.get("uniqueItems"):
        seen = []
        for i, item in enumerate(value):
            if any(_equal(item, s) for s in seen):
                raise SchemaError(f"{where}[{i}]", f"{_short(item)} appears twice")
            seen.append(item)


def _check_object(value, schema, root, where):
    for name in schema.get("required", ()):
        if name not in value:
            raise SchemaError(where, f"required property {name!r} is missing")
    if len(value) < schema.get("minProperties", 0):
        raise SchemaError(where, f"has {len(value)} properties, fewer than {schema['minProperties']}")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise SchemaError(where, f"has {len(value)} properties, more than {schema['maxProperties']}")
    props = schema.get("properties", {})
    patterns = [(_pattern(p), s) for p, s in schema.get("patternProperties", {}).items()]
    extra = schema.get("additionalProperties", True)
    for name in sorted(value):
        if "propertyNames" in schema:
            _check(name, schema["propertyNames"], root, _key(where, name))
        matched = False
        if name in props:
            _check(value[name], props[name], root, _key(where, name))
            matched = True
        for regex, sub in patterns:
            if regex.fullmatch(name):
                _check(value[name], sub, root, _key(where, name))
                matched = True
        if matched:
            continue
        if extra is False:
            raise SchemaError(where, f"unexpected property {_short(name)}")
        if isinstance(extra, dict):
            _check(value[name], extra, root, _key(where, name))


def _same(a, b):
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _equal(a, b):
    """Deep JSON equality (for uniqueItems)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return _same(a, b)


def _short(value):
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(type(value))
    return text if len(text) <= 60 else text[:57] + "..."

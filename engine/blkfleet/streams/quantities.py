"""Command-line quantities of import, transform, stats and export: durations, sizes and factors with their units,
as argparse types (a bad value is argparse's one-line error, exit 2).

Durations: a number of seconds, or a number with ``s``, ``ms``, ``us`` or ``ns`` (``1.5``, ``200ms``), exact
to the nanosecond (decimal arithmetic, no float rounding). Sizes: bytes, or a number with ``K``, ``M``, ``G``,
``T`` (powers of 1024; ``KiB`` and ``k`` too) or ``s`` (512-byte sectors).
"""

import argparse
import re
from decimal import Decimal, InvalidOperation

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(s|ms|us|ns)?\s*")
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(?:([kKmMgGtT])(?:i?B)?|(s)|B)?\s*")
NS = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1, None: 10 ** 9}
BYTES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
LIMIT = (1 << 63) - 1


def duration_ns(text, signed=False):
    """``text`` as integer nanoseconds (``signed``: a leading ``-`` allowed)."""
    value = str(text).strip()
    negative = signed and value.startswith("-")
    m = _DURATION.fullmatch(value[1:] if negative else value)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (seconds, or a number with s, ms, us or ns)")
    try:
        ns = int(Decimal(m.group(1)) * NS[m.group(2)])
    except (InvalidOperation, OverflowError, ValueError):
        ns = LIMIT + 1
    if ns > LIMIT:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too long")
    return -ns if negative else ns


def signed_duration_ns(text):
    return duration_ns(text, signed=True)


def size_bytes(text, signed=False):
    """``text`` as integer bytes (``signed``: a leading ``-`` allowed)."""
    value = str(text).strip()
    negative = signed and value.startswith("-")
    m = _SIZE.fullmatch(value[1:] if negative else value)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (bytes, or a number with K, M, G, T or s)")
    unit = BYTES[m.group(2).lower()] if m.group(2) else 512 if m.group(3) else 1
    exact = Decimal(m.group(1)) * unit
    if exact != exact.to_integral_value():
        raise argparse.ArgumentTypeError(f"size {text!r} is not a whole number of bytes")
    if exact > LIMIT:
        raise argparse.ArgumentTypeError(f"size {text!r} is too large")
    return -int(exact) if negative else int(exact)


def signed_size_bytes(text):
    return size_bytes(text, signed=True)


def positive_size(text):
    value = size_bytes(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be more than 0")
    return value


def seconds(ns):
    """Nanoseconds as the shortest exact decimal of seconds (for messages and records)."""
    whole, frac = divmod(abs(ns), 10 ** 9)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return ("-" if ns < 0 else "") + text

"""The checks of command-line values that every ``blkfleet`` command's parser shares (argparse ``type=``).

Each takes the argument's text and returns its value, or raises ``argparse.ArgumentTypeError`` with a short
reason; argparse then names the option (``argument -x/--acc-factor: must be a number > 0, not '0'``) and the
command fails with that one line and exit code 2 (``cli._Parser.error``). Checks of a single command's own
grammar (a metric and a tolerance, a run token) stay with that command.
"""

import math
import os
from argparse import ArgumentTypeError


def _number(text, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_float(text):
    """A finite number > 0 (seconds, factors)."""
    value = _number(text)
    if not value > 0:
        raise ArgumentTypeError(f"must be a number > 0, not {text!r}")
    return value


def nonnegative_float(text):
    """A finite number >= 0 (a timeout that may be zero)."""
    value = _number(text)
    if not value >= 0:
        raise ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value


def fraction(text):
    """A number strictly between 0 and 1 (a significance level)."""
    value = _number(text)
    if not 0 < value < 1:
        raise ArgumentTypeError(f"must be within (0, 1), not {text!r}")
    return value


def positive_int(text):
    """An integer >= 1 (counts, sizes)."""
    value = _number(text, int)
    if value < 1:
        raise ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


def nonnegative_int(text):
    """An integer >= 0 (retries that may be none)."""
    value = _number(text, int)
    if value < 0:
        raise ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return value


def directory(text):
    """An existing directory, as given."""
    if not os.path.isdir(text):
        raise ArgumentTypeError(f"no such directory: {text!r}")
    return text


def add_acc_factor(parser, help):
    """``-x/--acc-factor X`` (replay and compare): the replay runs X times faster, any number > 0 (default 1)."""
    parser.add_argument("-x", "--acc-factor", type=positive_float, default=1.0, metavar="X", help=help)

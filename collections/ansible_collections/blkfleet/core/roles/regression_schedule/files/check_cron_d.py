# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check a system crontab file (/etc/cron.d format) without crontab or a cron daemon: python3 check_cron_d.py FILE.

Every line is empty, a comment, NAME=VALUE, or "MIN HOUR DOM MON DOW USER COMMAND" (or "@reboot|@hourly|...
USER COMMAND"); each time field is *, a number, a range or a list, with an optional /step, in range (names for
months and days of week); the user exists; the command's program, when an absolute path, is executable; the file
ends with a newline (cron ignores a last line without one). Exit 0 when valid, 1 with one message per problem.
"""

import os
import pwd
import re
import sys

FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
          ("month", 1, 12, "jan feb mar apr may jun jul aug sep oct nov dec"),
          ("day of week", 0, 7, "sun mon tue wed thu fri sat"))
SPECIALS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
ENV = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def _value(text, low, names):
    if names and text.lower() in names.split():
        return names.split().index(text.lower()) + (low if low == 1 else 0)
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def check_field(text, name, low, high, names):
    for item in text.split(","):
        body, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            return "%s: bad step in %r" % (name, item)
        if body == "*":
            continue
        first, dash, last = body.partition("-")
        try:
            values = [_value(first, low, names)] + ([_value(last, low, names)] if dash else [])
        except ValueError as e:
            return "%s: %r is not a number%s" % (name, str(e), " or a name" if names else "")
        if any(v < low or v > high for v in values):
            return "%s: %r out of range %d-%d" % (name, body, low, high)
        if dash and values[0] > values[1]:
            return "%s: range %r is reversed" % (name, body)
        if slash and not dash:
            return "%s: a step needs * or a range (%r)" % (name, item)
    return None


def check_line(line):
    words = line.split()
    if words[0].startswith("@"):
        if words[0] not in SPECIALS:
            return ["unknown %s" % words[0]]
        rest = words[1:]
        problems = []
    else:
        if len(words) < 7:
            return ["expected 5 time fields, a user and a command: %r" % line]
        problems = [p for p in (check_field(w, *f) for w, f in zip(words[:5], FIELDS)) if p]
        rest = words[5:]
    if len(rest) < 2:
        return problems + ["a user and a command are needed: %r" % line]
    try:
        pwd.getpwnam(rest[0])
    except KeyError:
        problems.append("no such user %r" % rest[0])
    program = rest[1]
    if program.startswith("/") and not os.access(program, os.X_OK):
        problems.append("%s is not an executable file" % program)
    return problems


def check(text):
    problems = []
    if text and not text.endswith("\n"):
        problems.append("the last line has no newline (cron ignores it)")
    jobs = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#") or ENV.match(line):
            continue
        jobs += 1
        problems += ["line %d: %s" % (number, p) for p in check_line(line)]
    if not jobs:
        problems.append("no job")
    return problems


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_cron_d.py FILE\n")
        return 2
    with open(argv[1]) as f:
        problems = check(f.read())
    for p in problems:
        sys.stderr.write("%s: %s\n" % (argv[1], p))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

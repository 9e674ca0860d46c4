# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Refuse to run a scheduled playbook as root from files that someone else can change.

    python3 check_checkout.py [--user NAME] [--tree DIR]... [--dir DIR]... [--program FILE]... [--base DIR]
                              [--arg WORD]...

The scheduled wrapper runs ansible-playbook as root (or as its user) from a project checkout: it reads the
checkout's ansible.cfg, playbooks, roles and collections, runs the venv's ansible-playbook and appends to a log
there. Whoever can change any of those gets the wrapper's privileges, so every one of them must be owned by root
(or by the user running this check, or the --user given) and not writable by anyone else, and so must every
directory above them (a world-writable directory above counts only with the sticky bit, as /tmp has it):

  --tree DIR     DIR, the directories above it, and everything below it (symbolic links are followed: their
                 targets, and what is above the targets, are checked the same way);
  --dir DIR      a directory that may not exist yet (the log directory): its nearest existing ancestor and
                 everything above; DIR itself when it exists;
  --program FILE an executable, its interpreter (#! line) and, when it is in a virtual environment
                 (pyvenv.cfg one level above its directory), that whole environment;
  --arg WORD     an argument of ansible-playbook: when it names an existing path (after a leading '@' or an
                 '--option=' prefix; relative to the last --base), that path as a --tree.

Exit 0 when everything is trusted; 1 with one line per problem (at most 20) on stderr; 2 on bad usage.
"""

import os
import pwd
import stat
import sys

MAX_PROBLEMS = 20


class Checker:
    """Collects problems; walks each directory tree once."""

    def __init__(self):
        self.owners = {0, os.geteuid()}
        self.problems = []
        self.seen = set()

    def owner_ok(self, st):
        return st.st_uid in self.owners

    def problem(self, path, text):
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append('%s: %s' % (path, text))

    def entry(self, path, st):
        """Owner and mode of one file or directory (not of what is above it)."""
        if not self.owner_ok(st):
            self.problem(path, 'owned by uid %d, not by root' % st.st_uid)
        elif st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid())):
            self.problem(path, 'others can write to it (mode %04o)' % stat.S_IMODE(st.st_mode))

    def above(self, path):
        """The directories above ``path`` (resolved): trusted owners, nobody else can rename what they hold."""
        parent = os.path.dirname(os.path.realpath(path))
        while True:
            try:
                st = os.stat(parent)
            except OSError as e:
                self.problem(parent, 'cannot inspect it: %s' % e.strerror)
                return
            if not self.owner_ok(st):
                self.problem(parent, 'owned by uid %d, not by root (it is above %s)' % (st.st_uid, path))
            elif st.st_mode & stat.S_ISVTX:
                pass  # sticky: others may add entries, but not remove or rename ours
            elif st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid())):
                self.problem(parent, 'others can write to it (mode %04o; it is above %s)'
                             % (stat.S_IMODE(st.st_mode), path))
            if parent == '/':
                return
            parent = os.path.dirname(parent)

    def tree(self, path):
        real = os.path.realpath(path)
        if real in self.seen:
            return
        try:
            st = os.stat(real)
        except OSError as e:
            self.problem(path, 'cannot inspect it: %s' % e.strerror)
            return
        self.seen.add(real)
        self.above(real)
        self.entry(real, st)
        if not stat.S_ISDIR(st.st_mode):
            return
        links = []
        for top, dirs, files in os.walk(real, onerror=lambda e: self.problem(e.filename, e.strerror)):
            for name in dirs + files:
                full = os.path.join(top, name)
                try:
                    lst = os.lstat(full)
                except OSError as e:
                    self.problem(full, 'cannot inspect it: %s' % e.strerror)
                    continue
                if stat.S_ISLNK(lst.st_mode):
                    links.append(full)  # a link's own mode means nothing; its target is checked below
                else:
                    self.entry(full, lst)
            self.seen.update(os.path.join(top, d) for d in dirs)
        for link in links:
            target = os.path.realpath(link)
            if not _inside(target, real):
                self.tree(target)

    def directory(self, path):
        path = os.path.abspath(path)
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        try:
            st = os.stat(existing)
        except OSError as e:
            self.problem(existing, 'cannot inspect it: %s' % e.strerror)
            return
        self.entry(existing, st)
        self.above(existing)

    def program(self, path):
        self.tree(path)
        try:
            with open(path, 'rb') as f:
                first = f.readline(4096)
        except OSError as e:
            self.problem(path, 'cannot read it: %s' % e.strerror)
            return
        if first.startswith(b'#!'):
            words = first[2:].decode('utf-8', 'replace').split()
            if words and words[0].startswith('/'):
                self.tree(words[0])
        venv = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        if os.path.isfile(os.path.join(venv, 'pyvenv.cfg')):
            self.tree(venv)

    def argument(self, word, base):
        value = word[1:] if word.startswith('@') else word
        if value.startswith('-'):
            if '=' not in value:
                return
            value = value.split('=', 1)[1]
        full = os.path.join(base, value)
        if value and os.path.lexists(full):
            self.tree(full)


def _inside(path, top):
    return path == top or path.startswith(top.rstrip('/') + '/')


def main(argv):
    checker = Checker()
    base = os.getcwd()
    actions = {'--tree': checker.tree, '--dir': checker.directory, '--program': checker.program}
    if len(argv) % 2 or not argv:
        sys.stderr.write('usage: check_checkout.py [--tree DIR] [--dir DIR] [--program FILE] [--arg WORD] ...\n')
        return 2
    for option, value in zip(argv[::2], argv[1::2]):
        if option == '--base':
            base = value
        elif option == '--user':
            try:
                checker.owners.add(pwd.getpwnam(value).pw_uid)
            except KeyError:
                sys.stderr.write('check_checkout.py: no such user %s\n' % value)
                return 2
        elif option == '--arg':
            checker.argument(value, base)
        elif option in actions:
            actions[option](value)
        else:
            sys.stderr.write('check_checkout.py: unknown option %s\n' % option)
            return 2
    for line in checker.problems:
        sys.stderr.write('refusing to run: %s\n' % line)
    return 1 if checker.problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

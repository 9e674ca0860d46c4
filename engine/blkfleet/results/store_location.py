"""Where the results store is: an SQLite file (the default, ``results/blkfleet.sqlite``) or a PostgreSQL database
named by a ``postgresql://`` (or ``postgres://``) URL; ``--db`` names it, else ``$BLKFLEET_DB``, so that one
setting points every command (and the Ansible roles, whose controller commands inherit it) at a shared store."""

import os
import re

DEFAULT_DB = os.path.join("results", "blkfleet.sqlite")
ENV = "BLKFLEET_DB"
_URL = re.compile(r"^postgres(?:ql)?://", re.I)


def default_db():
    """``$BLKFLEET_DB`` when set and not empty, else the SQLite file under ./results."""
    return os.environ.get(ENV) or DEFAULT_DB


def is_postgresql(location):
    return bool(_URL.match(location))


def shown(location):
    """The location as messages show it: a URL without its password."""
    return re.sub(r"^(postgres(?:ql)?://[^/@:]*):[^/@]*@", r"\1:***@", location, flags=re.I)


def exists(location):
    """Whether a store may be there without creating one: an SQLite file that exists, or any PostgreSQL URL
    (whether the database holds a store is known only once connected)."""
    return is_postgresql(location) or os.path.exists(location)


def db_option(parser, note=""):
    """The ``--db`` option of every command that reads or writes the store (its value: None for the default,
    resolved by ``default_db`` when the command runs)."""
    parser.add_argument("--db", metavar="PATH|URL", help=f"results store: an SQLite file or a postgresql:// URL "
                        f"(default ${ENV}, else {DEFAULT_DB}{note})")

import os
from pathlib import Path


def _cache_gettext_lookups():
    """argparse looks for message catalogs (a dozen stat calls) each time a parser is built, and main() builds
    one per case: two thirds of a case's time. The lookups depend on the environment only, so they are cached
    for the fuzz cases. (Likewise argparse asks for the terminal's size for every option it adds: COLUMNS and
    LINES answer without a system call.)"""
    import functools
    import gettext

    find = gettext.find
    cached = functools.lru_cache(maxsize=None)(find)

    def lookup(domain, localedir=None, languages=None, all=False):  # noqa: A002 - gettext's own name
        if languages is None:
            return cached(domain, localedir, None, all)
        return find(domain, localedir, languages, all)

    gettext.find = lookup
    os.environ.setdefault("COLUMNS", "120")
    os.environ.setdefault("LINES", "50")


_cache_gettext_lookups()


def pytest_collection_modifyitems(items):
    """Every fuzz test is slow (10,000 cases: seconds to tens of seconds)."""
    import pytest

    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)

"""Fixtures for tests that run the real ``ansible`` programs; the helpers are in tests/helpers/adhoc.py."""

import pytest

from helpers.adhoc import run_adhoc


@pytest.fixture
def adhoc():
    return run_adhoc

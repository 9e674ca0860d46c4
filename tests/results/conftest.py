"""The throwaway PostgreSQL server of the results-store tests (helpers.postgres)."""

from helpers.postgres import postgres_db, postgres_server  # noqa: F401 (fixtures)

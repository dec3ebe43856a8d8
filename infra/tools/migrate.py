"""`make migrate`: bring the database (DATABASE_URL, else the embedded SQLite file) to the newest Alembic revision."""

from __future__ import annotations

import sys

from chalicelib.adapters import database
from chalicelib.settings import get_settings
from infra.engine import preflight


def main() -> int:
    url = preflight.check_database_url(get_settings().effective_database_url)
    preflight.check_database_answers(url)
    preflight.check_migrations(url)
    revision = database.migrate_for_deploy(url)
    print(f"{preflight.describe_database(url)} is at revision {revision} (the newest)")
    return 0


if __name__ == "__main__":
    sys.exit(preflight.run("make migrate", main))

"""The database migration CloudFormation runs on every deploy: the custom resource `DatabaseMigration` of
template.yaml, whose property `MigrateFunctionVersion` names the version of the migration function it is for."""

from __future__ import annotations

import os
from typing import Any

from chalicelib.adapters import database

VERSION_PROPERTY = "MigrateFunctionVersion"


def migrate_on_deploy(properties: dict[str, Any]) -> dict[str, str]:
    """Migrate, unless the request is for another version of this function than the one running.

    That happens when CloudFormation rolls a failed deploy back: it asks again with the previous properties, and
    may do so while the alias still runs the new code. Migrations only add, so the schema as it is then serves
    the previous code; migrating would run the failed migration once more and fail the rollback too.
    """
    asked = str(properties.get(VERSION_PROPERTY, "")).rsplit(":", 1)[-1]
    running = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    if asked and running != "$LATEST" and asked != running:
        return {"Revision": "unchanged", "Skipped": f"the request is for version {asked}; version {running} runs"}
    return {"Revision": database.migrate_for_deploy()}

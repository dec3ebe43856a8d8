"""Lambda entry point that brings the deployed database to the newest schema (run after each deploy)."""

from typing import Any

from chalicelib.adapters import database
from chalicelib.domain import catalogue


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Migrate; with `{"seed": true}` also insert the demo catalogue's missing products."""
    database.migrate()
    added = 0
    if isinstance(event, dict) and event.get("seed") is True:
        with database.UnitOfWork() as uow:
            added = catalogue.seed(uow.session)
            uow.commit()
    return {"migrated": True, "products_added": added}

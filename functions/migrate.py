"""Lambda entry point that brings the deployed database to the newest schema.

CloudFormation invokes it on every deploy, as the custom resource `DatabaseMigration`; an operator may invoke it
directly (`{"seed": true}` also adds the demo catalogue).
"""

from typing import Any

from chalicelib.adapters import database
from chalicelib.entrypoints import custom_resource
from chalicelib.entrypoints.deploy_migration import migrate_on_deploy
from chalicelib.service import products


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Migrate; as a custom resource, answer CloudFormation; with `{"seed": true}` also insert the demo
    catalogue's missing products."""
    if custom_resource.is_request(event):
        return custom_resource.handle(event, context, migrate_on_deploy)
    database.migrate()
    added = 0
    if isinstance(event, dict) and event.get("seed") is True:
        added = products.seed_catalogue()
    return {"migrated": True, "products_added": added}

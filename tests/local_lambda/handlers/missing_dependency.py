"""A handler module whose dependency is not installed."""

import a_package_that_is_not_installed  # type: ignore[import-not-found]  # noqa: F401


def handler(event: object, context: object) -> None:
    return None

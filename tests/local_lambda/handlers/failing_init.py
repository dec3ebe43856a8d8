"""A handler module whose init (module-level code) raises."""

raise RuntimeError("DATABASE_URL is not set")


def handler(event: object, context: object) -> None:
    return None

"""The outside world: the database (engine, unit of work, tables, migrations), the Redis cache, Powertools
idempotency records, Step Functions and the payment provider."""

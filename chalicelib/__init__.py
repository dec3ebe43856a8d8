"""The saga orchestrator's core, in layers; each imports only the layers below it (tests/unit/test_layers.py):

- `entrypoints`: the HTTP adapter behind app.py's routes, the body of every step Lambda, the CLI;
- `service`: start and read sagas, run one step of a saga, recover and retry sagas;
- `presentation`: what the API answers and shows (answer models, saga views, OpenAPI, the saga page);
- `domain`: the sagas' steps and their rules, contracts and errors, the saga's status log;
- `adapters`: the database and its tables, the Redis cache, idempotency records, Step Functions, payments;
- `observability` and `settings`, used by every layer.
"""

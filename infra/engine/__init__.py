"""The local engine and what it and its servers need: template.yaml on moto, the functions in local_lambda
workers, the API server, Redis and PostgreSQL of our own, ports, setup checks and the time budgets."""

from infra.engine.moto_imports import defer_moto_batch

defer_moto_batch()

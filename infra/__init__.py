"""Local tooling, none of it shipped to Lambda: the local engine and API server, the demo, soak, cost and bench
helpers, operator commands, invariant checks, the dashboards' definition and LocalStack."""

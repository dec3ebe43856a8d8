"""The operator and demo tools: make demo, make soak, make migrate, make reconcile and retry, the saga
page's signed request, and the invariants, ledger and token canary they check."""

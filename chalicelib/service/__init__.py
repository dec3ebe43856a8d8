"""Use cases: start and read sagas, run one step of a saga in a transaction, recover and retry sagas (one, or all
that a filter matches)."""

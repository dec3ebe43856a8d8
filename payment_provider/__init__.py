"""A small Stripe-like payment provider: an HTTP service with its own ledger of charges and refunds.

It runs as its own process (`python -m payment_provider`, or `launcher.start_provider` from Python) and keeps
its ledger apart from the orchestrator's tables: an SQLite file by default, or the `payment_provider` schema of
the database `PROVIDER_DATABASE_URL` names.
"""

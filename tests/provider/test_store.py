"""Where the ledger lives: the SQLite file by default, the `payment_provider` schema on PostgreSQL, the database
`<database>_payment_provider` beside the orchestrator's on MySQL."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text

from chalicelib.adapters.payment_provider import PaymentProviderClient
from payment_provider.answers import Answer
from payment_provider.commands import ChargeRequest, RefundRequest
from payment_provider.idempotency import IdempotencyKeys, IdempotencyScope, in_use
from payment_provider.launcher import REPOSITORY, start_provider
from payment_provider.ledger import Ledger, RefundExceedsCharge
from payment_provider.store import (
    DEFAULT_SQLITE_FILE,
    SCHEMA,
    charges,
    open_ledger_database,
    resolve_url,
    schema_name,
)
from tests.helpers import throwaway_database
from tests.provider.support import assert_concurrent_duplicates_charge_once, run_together, unique

ADMIN_DATABASE_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
ADMIN_MYSQL_URL = os.environ.get("TEST_ADMIN_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
LEDGER_TABLES = {"charges", "refunds", "idempotency_records"}


@pytest.fixture
def throwaway_postgres_url() -> Iterator[str]:
    with throwaway_database(ADMIN_DATABASE_URL, "provider_test") as url:
        yield url


@pytest.fixture
def throwaway_mysql_url() -> Iterator[str]:
    with throwaway_database(ADMIN_MYSQL_URL, "provider_test", f"_{SCHEMA}") as url:
        yield url


def test_on_postgresql_the_ledger_lives_in_its_own_schema_and_outlives_a_restart(throwaway_postgres_url: str) -> None:
    saga_id, key = unique("saga"), unique("key")
    with start_provider(database_url=throwaway_postgres_url) as running:
        client = PaymentProviderClient(running.url, running.api_key)
        charge = client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key)
        refund = client.refund(charge.id, 400, idempotency_key=unique("key"))
        assert client.cancel_refund(refund.id).status == "cancelled"
        assert_concurrent_duplicates_charge_once(client)
    with start_provider(database_url=throwaway_postgres_url) as running:
        client = PaymentProviderClient(running.url, running.api_key)
        assert client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key) == charge
        assert client.get_refund(refund.id) == replace(refund, status="cancelled")
    engine = create_engine(throwaway_postgres_url)
    try:
        tables = inspect(engine)
        assert set(tables.get_table_names(schema=SCHEMA)) == LEDGER_TABLES
        assert LEDGER_TABLES.isdisjoint(tables.get_table_names(schema="public"))
        with engine.connect() as connection:
            stored = connection.execute(text(f"SELECT id, amount_cents FROM {SCHEMA}.charges")).all()
        assert (charge.id, 1000) in [tuple(row) for row in stored]
    finally:
        engine.dispose()


def test_on_mysql_the_ledger_lives_in_a_database_of_its_own_and_outlives_a_restart(throwaway_mysql_url: str) -> None:
    saga_id, key = unique("saga"), unique("Key")
    with start_provider(database_url=throwaway_mysql_url) as running:
        client = PaymentProviderClient(running.url, running.api_key)
        charge = client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key)
        other = client.charge(unique("saga"), "tok_visa", 700, "usd", idempotency_key=key.lower())
        assert_concurrent_duplicates_charge_once(client)
    with start_provider(database_url=throwaway_mysql_url) as running:
        client = PaymentProviderClient(running.url, running.api_key)
        assert client.charge(saga_id, "tok_visa", 1000, "usd", idempotency_key=key) == charge
    assert other.id != charge.id  # keys differing in case only are two keys, as on PostgreSQL
    ledger_database = schema_name(throwaway_mysql_url)
    assert ledger_database == throwaway_mysql_url.rsplit("/", 1)[1] + "_payment_provider"
    engine = create_engine(throwaway_mysql_url)
    try:
        tables = inspect(engine)
        assert set(tables.get_table_names(schema=ledger_database)) == LEDGER_TABLES
        assert LEDGER_TABLES.isdisjoint(tables.get_table_names())
        with engine.connect() as connection:
            stored = connection.execute(text(f"SELECT id, amount_cents FROM `{ledger_database}`.charges")).all()
        assert (charge.id, 1000) in [tuple(row) for row in stored]
    finally:
        engine.dispose()


def test_without_a_database_url_the_ledger_is_the_sqlite_file_in_dot_local() -> None:
    """The charge it makes there is taken out again: the file holds the user's `make run` and `make demo` money, and
    a charge no saga explains would break the demo's invariants on every later run."""
    assert DEFAULT_SQLITE_FILE == REPOSITORY / ".local" / "payment_provider.db"
    assert resolve_url(None) == f"sqlite:///{DEFAULT_SQLITE_FILE}"
    was_there = DEFAULT_SQLITE_FILE.exists()
    saga_id, key = unique("saga"), unique("key")
    try:
        with start_provider(env={"PROVIDER_DATABASE_URL": None}) as running:
            client = PaymentProviderClient(running.url, running.api_key)
            charge = client.charge(saga_id, "tok_visa", 321, "usd", idempotency_key=key)
        connection = sqlite3.connect(DEFAULT_SQLITE_FILE)
        try:
            stored = connection.execute("SELECT amount_cents FROM charges WHERE id = ?", (charge.id,)).fetchall()
            journal_mode = connection.execute("PRAGMA journal_mode").fetchone()
        finally:
            connection.close()
    finally:
        _take_out_of_the_local_ledger(saga_id, key, was_there)
    assert stored == [(321,)]
    assert journal_mode == ("wal",)


def _take_out_of_the_local_ledger(saga_id: str, key: str, was_there: bool) -> None:
    if not was_there:
        for suffix in ("", "-wal", "-shm"):
            DEFAULT_SQLITE_FILE.with_name(DEFAULT_SQLITE_FILE.name + suffix).unlink(missing_ok=True)
        return
    connection = sqlite3.connect(DEFAULT_SQLITE_FILE)
    try:
        with connection:
            connection.execute("DELETE FROM idempotency_records WHERE idempotency_key = ?", (key,))
            connection.execute("DELETE FROM charges WHERE saga_id = ?", (saga_id,))
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def ledger_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = open_ledger_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        engine = open_ledger_database(request.getfixturevalue(f"throwaway_{request.param}_url"))
    yield engine
    engine.dispose()


def warm_up_pool(engine: Engine, connections: int = 8) -> None:
    """Open the pool's connections ahead: connecting takes longer than the overlap the tests rely on."""
    opened = [engine.connect() for _ in range(connections)]
    for connection in opened:
        connection.close()


def test_duplicates_overlapping_inside_their_transactions_charge_once(ledger_engine: Engine) -> None:
    """Eight requests with one key, each holding its transaction open a while: one charge; the others are told the
    key is in use (409) while the first works, and a later repeat gets its answer."""
    ledger = Ledger(refund_settle_seconds=300)
    request = ChargeRequest(amount_cents=500, currency="usd", payment_token="tok_visa", saga_id=unique("saga"))
    scope = IdempotencyScope("account", "charges", unique("key"))

    def slow_capture(connection: Connection) -> Answer:
        charge = ledger.capture(connection, request, attempt_key=scope)
        time.sleep(0.2)  # keep the transaction open so the duplicates overlap it
        return Answer(201, {"id": charge.id})

    warm_up_pool(ledger_engine)
    keys = IdempotencyKeys(ledger_engine, ttl_seconds=3600)
    answers = run_together(8, lambda: keys.run_once(scope, request.fingerprint(), slow_capture))
    with ledger_engine.connect() as connection:
        charge_ids = connection.execute(select(charges.c.id).where(charges.c.saga_id == request.saga_id)).scalars()
        [charge_id] = list(charge_ids)
    assert Answer(201, {"id": charge_id}) in answers
    assert all(answer in (Answer(201, {"id": charge_id}), in_use()) for answer in answers)
    assert keys.run_once(scope, request.fingerprint(), slow_capture) == Answer(201, {"id": charge_id})


def test_overlapping_refunds_of_one_charge_never_exceed_it(ledger_engine: Engine) -> None:
    ledger = Ledger(refund_settle_seconds=300)
    with ledger_engine.begin() as connection:
        charge = ledger.capture(
            connection,
            ChargeRequest(amount_cents=1000, currency="usd", payment_token="tok_visa", saga_id=unique("saga")),
            attempt_key=unique("key"),
        )

    def slow_refund() -> str:
        with ledger_engine.begin() as connection:
            refund = ledger.refund(connection, RefundRequest(charge_id=charge.id, amount_cents=300))
            time.sleep(0.1)  # keep the transaction open so the other refunds overlap it
            return refund.id

    warm_up_pool(ledger_engine)
    outcomes = run_together(8, slow_refund)
    assert sum(isinstance(outcome, str) for outcome in outcomes) == 3
    assert all(isinstance(outcome, (str, RefundExceedsCharge)) for outcome in outcomes)
    with ledger_engine.connect() as connection:
        assert ledger.charge(connection, charge.id).refunded_cents == 900

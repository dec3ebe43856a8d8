"""The payment token is stored once, in its saga's row, and is found nowhere else (docs/design.md §3, Access).

Unique tokens (the test cards' `_<suffix>` form) go through every path, failures included, through the API; then
every sink is searched: what the API answered and showed, Redis, every table (the saga's `input` aside) and the
provider's ledger, every execution's input and history, every log line and EMF record.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from app import app
from chalicelib.adapters import database, saga_cache
from chalicelib.adapters.tables import Saga
from chalicelib.observability import telemetry
from chalicelib.observability.metric_names import SERVICE
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from infra.engine.local_functions import discard_logs
from infra.tools import canary
from payment_provider import store as ledger_store
from tests.conftest import Backend
from tests.helpers import final_view

JSON = {"Content-Type": "application/json"}


class Sinks:
    """What the test run wrote where an operator, a client or an attacker could read it."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.logs: list[str] = []
        self.lock = threading.Lock()

    def log(self, function_name: str, text: str) -> None:
        with self.lock:
            self.logs.append(text)


@pytest.fixture
def sinks(engine: LocalEngine, metrics_on: None) -> Iterator[Sinks]:
    collected = Sinks()
    here = io.StringIO()
    handler = logging.StreamHandler(here)
    handler.setFormatter(telemetry.logger.registered_formatter)
    logging.getLogger(SERVICE).addHandler(handler)
    engine.log_sink = collected.log
    yield collected
    engine.log_sink = discard_logs
    logging.getLogger(SERVICE).removeHandler(handler)
    collected.logs.append(here.getvalue())


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)


def _call(client: Client, sinks: Sinks, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    if method == "GET":
        response = client.http.get(path)
    else:
        response = client.http.post(path, headers=JSON, body=json.dumps(body) if body is not None else "")
    sinks.answers.append(response.body.decode() if isinstance(response.body, bytes) else str(response.body))
    return response


def _purchase(client: Client, sinks: Sinks, token: str, **faults: str) -> dict[str, Any]:
    body = {"customer_id": "canary", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": token, "faults": faults}
    accepted = _call(client, sinks, "POST", "/purchases", body)
    assert accepted.status_code == 202, accepted.body
    view = final_view(client, accepted.json_body["saga_id"], timeout=120)
    for path in ("", "/history", "/view"):
        _call(client, sinks, "GET", f"/sagas/{view['saga_id']}{path}")
    return view


def test_a_payment_token_is_kept_in_its_sagas_row_and_found_in_no_other_sink(
    backend: Backend, engine: LocalEngine, sinks: Sinks, provider_ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    unique = uuid.uuid4().hex[:12]
    tokens = {
        "approved": f"tok_visa_{unique}a",
        "declined": f"tok_declined_{unique}d",
        "unknown": f"tok_mystery_{unique}u",
        "flaky": f"tok_flaky_{unique}f",
        "lost": f"tok_lost_response_{unique}l",
        "compensation fails, then retried": f"tok_visa_{unique}r",
        "refused request": f"tok_visa_{unique}x",
    }
    with Client(app) as client:
        outcomes = {
            "approved": _purchase(client, sinks, tokens["approved"])["status"],
            "declined": _purchase(client, sinks, tokens["declined"])["status"],
            "unknown": _purchase(client, sinks, tokens["unknown"])["status"],
            "flaky": _purchase(client, sinks, tokens["flaky"])["status"],
            "lost": _purchase(client, sinks, tokens["lost"])["status"],
        }
        failed = _purchase(
            client, sinks, tokens["compensation fails, then retried"], confirm_sale="fail", refund_payment="fail"
        )
        retried = _call(client, sinks, "POST", f"/sagas/{failed['saga_id']}/retry")
        assert retried.status_code == 202
        outcomes["retried"] = final_view(client, failed["saga_id"], timeout=120)["status"]
        refused = _call(
            client,
            sinks,
            "POST",
            "/purchases",
            {"customer_id": "canary", "quantity": 0, "payment_token": tokens["refused request"]},
        )
        assert refused.status_code == 400
        _call(client, sinks, "GET", "/sagas?limit=100")
    assert outcomes == {
        "approved": "COMPLETED",
        "declined": "COMPENSATED",
        "unknown": "COMPENSATED",
        "flaky": "COMPLETED",
        "lost": "COMPLETED",
        "retried": "FAILED",
    }

    printed = capsys.readouterr()
    ledger = ledger_store.open_ledger_database(provider_ledger_url)
    with database.UnitOfWork() as uow:
        rows = list(canary.database_rows(uow.session, ledger))
        kept = [json.dumps(saga.input) for saga in uow.session.query(Saga)]
    ledger.dispose()
    redis_client = saga_cache.get_redis()
    assert redis_client is not None
    found = canary.leaks(
        tokens.values(),
        {
            "HTTP answers and pages": sinks.answers,
            "Redis": list(canary.redis_contents(redis_client)),
            "tables and the provider's ledger": rows,
            "executions": list(canary.executions()),
            "log lines and EMF records": [*sinks.logs, printed.out, printed.err],
        },
    )

    assert found == []
    # The search would have found them: each token (but the refused request's) is in its saga's row.
    assert canary.leaks(tokens.values(), {"saga rows": kept}) == [
        f"saga rows: {token}" for token in sorted(t for name, t in tokens.items() if name != "refused request")
    ]
    assert len(sinks.logs) > 20 and any("step succeeded" in text for text in sinks.logs), "the logs were captured"


HOLD_SAGAS = {"postgres": "LOCK TABLE sagas IN ACCESS EXCLUSIVE MODE", "mysql": "LOCK TABLES sagas WRITE"}
WAITING_INSERT = {
    "postgres": "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    " AND query LIKE 'INSERT INTO sagas%'",
    "mysql": "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND info LIKE 'INSERT INTO sagas%'",
}
CANCEL = {"postgres": "SELECT pg_cancel_backend({})", "mysql": "KILL QUERY {}"}


@pytest.mark.parametrize("backend_name", ["postgres", "mysql"], indirect=True)
def test_a_saga_insert_that_fails_shows_its_token_nowhere(
    backend: Backend, engine: LocalEngine, sinks: Sinks, caplog: pytest.LogCaptureFixture
) -> None:
    """The saga's INSERT waits for a lock another session holds, and the server cancels it (as a statement or lock
    timeout does): the error SQLAlchemy raises names the statement, and is logged and answered without the
    statement's parameters, which hold the token."""
    token = f"tok_visa_{uuid.uuid4().hex[:12]}i"
    admin = create_engine(get_settings().effective_database_url, poolclass=NullPool)
    holder = admin.connect()
    cancelled: list[int] = []

    def cancel_the_waiting_insert() -> None:
        with admin.connect() as watcher:
            for _ in range(600):
                waiting = list(watcher.execute(text(WAITING_INSERT[backend.name])).scalars())
                if waiting:
                    watcher.execute(text(CANCEL[backend.name].format(int(waiting[0]))))
                    cancelled.append(int(waiting[0]))
                    return
                time.sleep(0.1)

    def hold_the_table(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SAGAS") and not holder.in_transaction():
            holder.begin()
            holder.execute(text(HOLD_SAGAS[backend.name]))
            threading.Thread(target=cancel_the_waiting_insert, daemon=True).start()

    database_engine = database.get_engine()
    event.listen(database_engine, "before_cursor_execute", hold_the_table)
    try:
        with Client(app) as client, caplog.at_level(logging.DEBUG):
            body = {"customer_id": "canary", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": token}
            answer = _call(client, sinks, "POST", "/purchases", body)
    finally:
        event.remove(database_engine, "before_cursor_execute", hold_the_table)
        if backend.name == "mysql":
            holder.execute(text("UNLOCK TABLES"))
        holder.close()
        admin.dispose()

    assert cancelled, "the saga's INSERT waited, and was cancelled"
    assert answer.status_code >= 500, answer.body
    with database.UnitOfWork() as uow:
        assert uow.session.query(Saga).count() == 0, "the INSERT failed"
    logged = [*sinks.logs, caplog.text]
    assert any("INSERT INTO sagas" in text for text in logged), "the failed statement was logged"
    assert canary.leaks([token], {"HTTP answers": sinks.answers, "log lines": logged}) == []

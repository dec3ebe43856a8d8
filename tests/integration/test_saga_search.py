"""Operators' search and counts (issue 27, parts 1 and 2; docs/design.md §3.1): every filter of `GET /sagas` and
their combinations, paging across them, bad values, `GET /sagas/stats`, the `list` and `stats` commands, and the
columns the real flow and the migration write. Sagas are written through the data layer where no execution is needed."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from alembic import command
from alembic.config import Config
from chalice.test import Client
from sqlalchemy import create_engine, text

from app import app
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.entrypoints import cli
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from tests.conftest import ADMIN_DATABASE_URL, ADMIN_MYSQL_URL, Backend
from tests.helpers import SagaRow, purchase, run_saga, throwaway_database, write_sagas

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROWS = [
    # (id suffix, type, status, customer, order, sku, failed step, minutes after T0)
    ("01", "purchase", "COMPLETED", "alice", "o-1", "SKU-MOUSE", None, 0),
    ("02", "purchase", "COMPENSATED", "alice", None, "SKU-MOUSE", "process_payment", 1),
    ("03", "purchase", "FAILED", "bob", None, "SKU-DESK", "refund_payment", 2),
    ("04", "return", "COMPLETED", "alice", "o-1", "SKU-MOUSE", None, 3),
    ("05", "return", "FAILED", "bob", "o-2", "SKU-DESK", "cancel_refund", 4),
    ("06", "purchase", "RUNNING", "carol", None, "SKU-DESK", None, 5),
    ("07", "purchase", "COMPENSATED", "bob", None, "SKU-MOUSE", "confirm_sale", 6),
    ("08", "return", "REJECTED", "carol", "o-9", None, None, 7),
    ("09", "purchase", "COMPENSATING", "alice", None, "SKU-DESK", "process_payment", 8),
    ("10", "purchase", "FAILED", "alice", None, "SKU-MOUSE", "refund_payment", 9),
]
FILTERS: dict[str, list[str]] = {
    "status": ["FAILED", "COMPENSATED,FAILED", "RUNNING"],
    "type": ["purchase", "return"],
    "customer_id": ["alice", "bob"],
    "order_id": ["o-1", "o-2"],
    "sku": ["SKU-MOUSE", "SKU-DESK"],
    "step": ["process_payment", "refund_payment", "cancel_refund"],
    "created_after": [(T0 + timedelta(minutes=4)).isoformat().replace("+00:00", "Z")],
    "created_before": [(T0 + timedelta(minutes=6)).isoformat()],
}


def _saga_id(suffix: str) -> str:
    return "a" * 30 + suffix


def _matches(row: tuple[Any, ...], key: str, value: str) -> bool:
    _, saga_type, status, customer, order, sku, step, minutes = row
    created = T0 + timedelta(minutes=minutes)
    fields = {"type": saga_type, "customer_id": customer, "order_id": order, "sku": sku, "step": step}
    if key == "status":
        return status in value.split(",")
    if key == "created_after":
        return created >= datetime.fromisoformat(value)
    if key == "created_before":
        return created < datetime.fromisoformat(value)
    return fields[key] == value


def _expected(query: dict[str, str]) -> list[str]:
    """Newest first, as the listing orders them: worked out from ROWS, not from the database."""
    chosen = [row for row in ROWS if all(_matches(row, key, value) for key, value in query.items())]
    return [_saga_id(row[0]) for row in sorted(chosen, key=lambda row: row[7], reverse=True)]


@pytest.fixture
def rows(backend: Backend) -> None:
    write_sagas(
        [
            SagaRow(_saga_id(suffix), saga_type, status, customer, T0 + timedelta(minutes=minutes), order, sku, step)
            for suffix, saga_type, status, customer, order, sku, step, minutes in ROWS
        ]
    )


@pytest.fixture
def client(backend: Backend) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _list(client: Client, query: dict[str, str]) -> list[str]:
    """Every saga the query matches, paging two at a time through next_cursor."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(ROWS) + 1):
        answer = client.http.get("/sagas?" + urlencode(query | {"limit": "2"} | ({"cursor": cursor} if cursor else {})))
        assert answer.status_code == 200, answer.body
        seen += [item["saga_id"] for item in answer.json_body["items"]]
        cursor = answer.json_body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the listing did not end")


@pytest.mark.usefixtures("rows")
def test_each_filter_alone_pages_through_what_it_matches_newest_first(client: Client) -> None:
    for key, values in FILTERS.items():
        for value in values:
            expected = _expected({key: value})
            assert expected, f"{key}={value} matches something"
            assert _list(client, {key: value}) == expected, f"{key}={value}"


@pytest.mark.usefixtures("rows")
def test_filters_combine_with_and(client: Client) -> None:
    combined = 0
    for (key_a, values_a), (key_b, values_b) in itertools.combinations(FILTERS.items(), 2):
        for value_a, value_b in itertools.product(values_a, values_b):
            query = {key_a: value_a, key_b: value_b}
            assert _list(client, query) == _expected(query), query
            combined += bool(_expected(query))
    everything = {"status": "FAILED", "type": "purchase", "customer_id": "alice", "sku": "SKU-MOUSE"}
    assert _list(client, everything | {"step": "refund_payment"}) == [_saga_id("10")]
    assert combined > 20, "the combinations match sagas, not only nothing"


@pytest.mark.usefixtures("rows")
def test_the_summary_names_what_was_searched_by(client: Client) -> None:
    item = client.http.get("/sagas?customer_id=bob&type=return").json_body["items"][0]

    assert item | {"created_at": None, "updated_at": None} == {
        "saga_id": _saga_id("05"),
        "type": "return",
        "status": "FAILED",
        "customer_id": "bob",
        "order_id": "o-2",
        "sku": "SKU-DESK",
        "step": "cancel_refund",
        "created_at": None,
        "updated_at": None,
        "links": {"self": f"/sagas/{_saga_id('05')}"},
    }


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("status=FAILED,NOPE", "status"),
        ("status=", "status"),
        ("customer_id=a%20b", "customer_id"),
        ("order_id=" + "x" * 65, "order_id"),
        ("sku=SKU%00", "sku"),
        ("step=compensation_failed", "step"),
        ("created_after=2026-12-01", "created_after"),
        ("created_after=2026-12-01T10:00:00", "created_after"),
        ("created_before=1700000000", "created_before"),
        ("created_before=2026-13-01T10:00:00Z", "created_before"),
        ("type=refund", "type"),
        ("colour=red", "colour"),
        ("limit=0", "limit"),
        ("cursor=bm90IG91cnM", "cursor"),
    ],
)
def test_a_bad_value_is_a_400_naming_its_key(client: Client, query: str, key: str) -> None:
    answer = client.http.get(f"/sagas?{query}")

    assert answer.status_code == 400
    assert answer.json_body["error"] == "ValidationError"
    assert [detail["field"] for detail in answer.json_body["details"]] == [key]
    assert key in answer.json_body["message"]


def test_stats_count_by_status_and_type_since_a_time_and_the_stuck_and_oldest_running(
    client: Client, rows: None
) -> None:
    grace = get_settings().reconciler_grace_seconds
    now = datetime.now(UTC)
    with database.UnitOfWork() as uow:
        # Quiet for less than the grace period: not stuck yet; the fixture's RUNNING and COMPENSATING ones are.
        uow.session.add(
            Saga(
                id=_saga_id("11"),
                type="return",
                status="RUNNING",
                input={},
                result={},
                created_at=now - timedelta(hours=1),
                updated_at=now - timedelta(seconds=grace / 2),
            )
        )
        uow.commit()

    everything = client.http.get("/sagas/stats").json_body
    since = client.http.get("/sagas/stats?" + urlencode({"since": (T0 + timedelta(minutes=5)).isoformat()}))

    assert everything["since"] is None
    assert everything["by_status"] == {
        "RUNNING": 2,
        "COMPENSATING": 1,
        "COMPLETED": 2,
        "COMPENSATED": 2,
        "REJECTED": 1,
        "FAILED": 3,
        "CANCELLED": 0,
        "RESOLVED": 0,
    }
    assert everything["by_type"] == {"purchase": 7, "return": 4}
    assert everything["total"] == 11
    assert everything["stuck"] == 2
    assert everything["oldest_running_age_seconds"] >= (now - (T0 + timedelta(minutes=5))).total_seconds()
    assert since.status_code == 200
    assert since.json_body["by_status"] == {
        "RUNNING": 2,
        "COMPENSATING": 1,
        "COMPLETED": 0,
        "COMPENSATED": 1,
        "REJECTED": 1,
        "FAILED": 1,
        "CANCELLED": 0,
        "RESOLVED": 0,
    }
    assert since.json_body["by_type"] == {"purchase": 4, "return": 2}
    assert since.json_body["stuck"] == everything["stuck"], "stuck is counted over every saga"


def test_stats_with_no_saga_count_zeros_and_no_running_age(client: Client) -> None:
    stats = client.http.get("/sagas/stats").json_body

    assert stats["total"] == stats["stuck"] == 0
    assert set(stats["by_status"].values()) == {0}
    assert stats["oldest_running_age_seconds"] is None


@pytest.mark.parametrize("since", ["yesterday", "2026-12-01", "2026-12-01T10:00:00"])
def test_stats_with_a_bad_since_is_a_400_naming_it(client: Client, since: str) -> None:
    answer = client.http.get(f"/sagas/stats?since={since}")

    assert answer.status_code == 400
    assert [detail["field"] for detail in answer.json_body["details"]] == ["since"]


@pytest.mark.usefixtures("rows")
def test_list_and_stats_commands_print_tables(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--status", "FAILED", "--customer-id", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].split() == ["saga", "type", "status", "step", "customer", "order", "sku", "created"]
    assert [line.split()[:4] for line in lines[2:]] == [[_saga_id("10"), "purchase", "FAILED", "refund_payment"]]

    assert cli.main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "stuck" in out
    counts = {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) == 2}
    assert counts["FAILED"] == "3" and counts["purchase"] == "7" and counts["stuck"] == "2"

    assert cli.main(["list", "--step", "nope"]) == 2
    assert "--step" in capsys.readouterr().err


def test_a_compensated_purchase_records_the_step_that_failed_and_is_found_by_it(
    backend: Backend, engine: LocalEngine, client: Client
) -> None:
    declined = run_saga(engine, purchase(token="tok_declined"))
    failed = run_saga(engine, purchase(token="tok_visa", confirm_sale="fail", refund_payment="fail"))
    completed = run_saga(engine, purchase())

    assert (declined.status, failed.status, completed.status) == ("COMPENSATED", "FAILED", "COMPLETED")
    by_step = {step: _list(client, {"step": step}) for step in ("process_payment", "refund_payment", "confirm_sale")}
    assert by_step == {
        "process_payment": [declined.saga_id],
        "refund_payment": [failed.saga_id],
        "confirm_sale": [],
    }
    order_id = completed.result["order_id"]
    assert _list(client, {"order_id": order_id}) == [completed.saga_id]
    assert _list(client, {"customer_id": "c-1", "sku": "SKU-MOUSE"}) == [
        completed.saga_id,
        failed.saga_id,
        declined.saga_id,
    ]


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin = ADMIN_DATABASE_URL if request.param == "postgres" else ADMIN_MYSQL_URL
    with throwaway_database(admin, "saga_backfill") as url:
        yield url


def test_the_migration_fills_the_searched_columns_of_existing_sagas(old_database: str) -> None:
    command.upgrade(_alembic(old_database), "0008")
    engine = create_engine(old_database)
    purchase_input = json.dumps({"customer_id": "alice", "sku": "SKU-MOUSE"})
    return_input = json.dumps({"customer_id": "alice", "order_id": "o-1"})
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO products (sku, name, price_cents, on_hand, reserved, initial_on_hand)"
                " VALUES ('SKU-MOUSE', 'm', 1, 1, 0, 1)"
            )
        )
        for saga_id, saga_type, status, given, result in [
            ("p1", "purchase", "COMPLETED", purchase_input, "{}"),
            ("p2", "purchase", "COMPENSATED", purchase_input, "{}"),
            ("p3", "purchase", "FAILED", purchase_input, json.dumps({"failed_compensation": "refund_payment"})),
            ("r1", "return", "COMPLETED", return_input, "{}"),
        ]:
            connection.execute(
                text(
                    "INSERT INTO sagas (id, type, status, input, result, created_at, updated_at, version, executions)"
                    " VALUES (:i, :t, :s, :input, :result, '2026-01-01', '2026-01-01', 1, 1)"
                ),
                {"i": saga_id, "t": saga_type, "s": status, "input": given, "result": result},
            )
        connection.execute(
            text(
                "INSERT INTO payments (saga_id, customer_id, amount_cents, provider_ref, status, created_at,"
                " updated_at) VALUES ('p1', 'alice', 1, 'ch_1', 'CAPTURED', '2026-01-01', '2026-01-01')"
            )
        )
        payment_id = connection.execute(text("SELECT id FROM payments")).scalar_one()
        connection.execute(
            text(
                "INSERT INTO orders (id, saga_id, customer_id, sku, quantity, unit_price_cents, payment_id, status,"
                " created_at) VALUES ('o-1', 'p1', 'alice', 'SKU-MOUSE', 1, 1, :p, 'CONFIRMED', '2026-01-01')"
            ),
            {"p": payment_id},
        )
        # p2: process_payment failed, the saga moved to COMPENSATING, then a later execution's forward step refused.
        for step, action, status, error in [
            ("process_payment", "execute", "FAILED", "PaymentDeclined"),
            ("saga", "saga", "COMPENSATING", None),
            ("reserve_stock", "execute", "FAILED", "SagaNotRunning"),
        ]:
            connection.execute(
                text(
                    "INSERT INTO audit_log (saga_id, step, action, status, attempt, error_type, payload, created_at)"
                    " VALUES ('p2', :step, :action, :status, 1, :error, '{}', '2026-01-01')"
                ),
                {"step": step, "action": action, "status": status, "error": error},
            )

    command.upgrade(_alembic(old_database), "head")

    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT id, customer_id, order_id, sku, failed_step FROM sagas ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in found] == [
        ("p1", "alice", "o-1", "SKU-MOUSE", None),
        ("p2", "alice", None, "SKU-MOUSE", "process_payment"),
        ("p3", "alice", None, "SKU-MOUSE", "refund_payment"),
        ("r1", "alice", "o-1", "SKU-MOUSE", None),
    ]

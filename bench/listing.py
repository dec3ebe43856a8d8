"""The saga search at scale: a throwaway database on PostgreSQL and on MySQL, loaded with `rows` sagas (1,000,000 by
default) in a few multi-row INSERT … SELECT statements, then each filter's page timed through the service
(`saga_search.search`, as `GET /sagas` runs it) and explained, naming the index each plan reads.

The data: one saga a second, newest last; a fifth of them returns; 90 % COMPLETED, 6 % COMPENSATED, 3 % REJECTED,
0.5 % FAILED, 0.4 % RUNNING, 0.1 % COMPENSATING; 100,000 customers, 500 products; a completed purchase's order, and a
return's, named after the purchase.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine

from bench.stats import summary_ms
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.service import saga_search
from chalicelib.settings import get_settings

ADMIN_URLS = {
    "PostgreSQL": os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"),
    "MySQL": os.environ.get("BENCH_MYSQL_ADMIN_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
"""Where the throwaway databases are made (a server that does not answer is reported and skipped)."""
CHUNK = 100_000
"""Rows an INSERT … SELECT writes."""
PAGE = 20
STATS_REPEATS = 5
"""The counts read every saga created since `since`: fewer repeats than the pages."""
MYSQL_PLAN_COLUMNS = ("table", "type", "key", "rows", "Extra")
START = datetime(2026, 1, 1, tzinfo=UTC)
STATUS = (
    "CASE WHEN MOD(n, 1000) < 900 THEN 'COMPLETED' WHEN MOD(n, 1000) < 960 THEN 'COMPENSATED' "
    "WHEN MOD(n, 1000) < 990 THEN 'REJECTED' WHEN MOD(n, 1000) < 995 THEN 'FAILED' "
    "WHEN MOD(n, 1000) < 999 THEN 'RUNNING' ELSE 'COMPENSATING' END"
)
FAILED_STEP = (
    "CASE WHEN MOD(n, 1000) BETWEEN 900 AND 959 THEN "
    "(CASE MOD(n, 3) WHEN 0 THEN 'process_payment' WHEN 1 THEN 'confirm_sale' ELSE 'reserve_stock' END) "
    "WHEN MOD(n, 1000) BETWEEN 990 AND 994 THEN 'refund_payment' WHEN MOD(n, 1000) = 999 THEN 'process_payment' END"
)
ORDER = "CASE WHEN MOD(n, 5) = 0 THEN MD5(CONCAT('o', n - 1)) WHEN MOD(n, 1000) < 900 THEN MD5(CONCAT('o', n)) END"
COLUMNS = (
    "id, type, status, caller, input, result, created_at, updated_at, version, executions, "
    "customer_id, order_id, sku, failed_step"
)


def run(rows: int, repeats: int) -> dict[str, Any]:
    engines: dict[str, Any] = {}
    for name, admin_url in ADMIN_URLS.items():
        try:
            with throwaway_database(admin_url, "saga_bench_listing") as url:
                engines[name] = _measure(url, rows, repeats)
        except ConnectionError as error:
            engines[name] = {"skipped": str(error)}
    return {"rows": rows, "repeats": repeats, "page": PAGE, "engines": engines}


def cases(rows: int) -> dict[str, tuple[dict[str, Any], int | None]]:
    """Each case's filter, and the saga its page starts after (None: the first page)."""
    middle = START + timedelta(seconds=rows // 2)
    ordered = next(n for n in range(rows - 10, 0, -1) if n % 5 and n % 1000 < 900)
    hour = {"created_after": middle, "created_before": middle + timedelta(hours=1)}
    return {
        "no filter": ({}, None),
        "status=FAILED": ({"status": "FAILED"}, None),
        "status=RUNNING,COMPENSATING": ({"status": "RUNNING,COMPENSATING"}, None),
        "type=return": ({"type": "return"}, None),
        "customer_id": ({"customer_id": f"c-{(rows // 3) % 100_000}"}, None),
        "order_id": ({"order_id": _md5(f"o{ordered}")}, None),
        "sku": ({"sku": "SKU-7"}, None),
        "step=refund_payment": ({"step": "refund_payment"}, None),
        "created_after + created_before (an hour)": (hour, None),
        "status=FAILED, type=purchase, created_after": (
            {"status": "FAILED", "type": "purchase", "created_after": middle},
            None,
        ),
        "customer_id, status=COMPLETED": ({"customer_id": f"c-{(rows // 3) % 100_000}", "status": "COMPLETED"}, None),
        "no filter, a page halfway down": ({}, rows // 2),
        "status=COMPLETED, a page halfway down": ({"status": "COMPLETED"}, rows // 2),
    }


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def _measure(url: str, rows: int, repeats: int) -> dict[str, Any]:
    settings = get_settings()
    saved = settings.database_url
    database.migrate(url)
    engine = create_engine(url, hide_parameters=True)
    try:
        began = time.perf_counter()
        with engine.begin() as connection:
            _load(connection, rows)
        load_seconds = time.perf_counter() - began
        with engine.connect() as connection:
            version = str(connection.exec_driver_sql("SELECT VERSION()").scalar())
        settings.database_url = url
        database.reset_engine()
        measured = {name: _case(engine, given, after, repeats) for name, (given, after) in cases(rows).items()}
        middle = START + timedelta(seconds=rows // 2)
        stats = {"every saga": _stats(None, STATS_REPEATS), "since halfway": _stats(middle, STATS_REPEATS)}
    finally:
        settings.database_url = saved
        database.reset_engine()
        engine.dispose()
    server = version.split(" on ")[0].split(",")[0]
    return {"server": server, "load_seconds": load_seconds, "cases": measured, "stats": stats}


def _stats(since: datetime | None, repeats: int) -> dict[str, float]:
    """`GET /sagas/stats` through the service: it counts every saga created since `since`."""
    saga_search.stats(since)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        saga_search.stats(since)
        times.append(time.perf_counter() - began)
    return summary_ms(times)


def _load(connection: Connection, rows: int) -> None:
    mysql = connection.dialect.name in ("mysql", "mariadb")
    created = (
        f"DATE_ADD('{START:%Y-%m-%d %H:%M:%S}', INTERVAL n SECOND)"
        if mysql
        else f"TIMESTAMPTZ '{START.isoformat()}' + make_interval(secs => n)"
    )
    values = (
        "MD5(CONCAT('s', n)), CASE WHEN MOD(n, 5) = 0 THEN 'return' ELSE 'purchase' END, "
        f"{STATUS}, '', '{{}}', '{{}}', "
        f"{created}, {created}, 1, 1, CONCAT('c-', MOD(n, 100000)), {ORDER}, CONCAT('SKU-', MOD(n, 500)), {FAILED_STEP}"
    )
    # The indexes are built once the rows are in, which is several times faster than keeping them up row by row.
    indexes = [index for index in Saga.metadata.tables[Saga.__tablename__].indexes if not index.unique]
    for index in indexes:
        index.drop(connection)
    for low in range(0, rows, CHUNK):
        size = min(CHUNK, rows - low)
        # Built of this module's constants and integers alone.
        series = _series(mysql, size)
        connection.exec_driver_sql(
            f"INSERT INTO sagas ({COLUMNS}) SELECT {values} FROM (SELECT {low} + s AS n FROM {series}) q"  # noqa: S608  # nosec B608
        )
    for index in indexes:
        index.create(connection)
    connection.exec_driver_sql("ANALYZE TABLE sagas" if mysql else "ANALYZE sagas")


def _series(mysql: bool, size: int) -> str:
    """A FROM clause whose column `s` runs from 0 to size - 1."""
    if not mysql:
        return f"generate_series(0, {size - 1}) AS g(s)"
    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(f"SELECT {d}" for d in range(1, 10)) + ")"
    places = max(1, len(str(size - 1)))
    terms = " + ".join(f"d{p}.d * {10**p}" for p in range(places))
    joined = ", ".join(f"{digits} AS d{p}" for p in range(places))
    return f"(SELECT {terms} AS s FROM {joined}) AS digits WHERE s < {size}"  # noqa: S608  # nosec B608


def _case(engine: Engine, given: dict[str, Any], after: int | None, repeats: int) -> dict[str, Any]:
    saga_filter = SagaFilter.model_validate(given)
    cursor = None
    if after is not None:
        cursor = saga_search.encode_cursor(Saga(id=_md5(f"s{after}"), created_at=START + timedelta(seconds=after)))
    found, _ = saga_search.search(saga_filter, PAGE, cursor)  # warm: the connection, the plan, the pages in cache
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        saga_search.search(saga_filter, PAGE, cursor)
        times.append(time.perf_counter() - began)
    plan = _explain(engine, saga_search.page_query(saga_filter, PAGE, cursor))
    return summary_ms(times) | {"found": len(found), "indexes": _indexes(plan), "plan": plan}


def _explain(engine: Engine, query: Any) -> list[str]:
    """The plan the server chooses for `query`, with its parameters bound as the service binds them."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.params
    if compiled.positiontup is not None:
        params = tuple(compiled.params[name] for name in compiled.positiontup)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    with engine.connect() as connection:
        result = connection.exec_driver_sql(("EXPLAIN " if mysql else "EXPLAIN (COSTS OFF) ") + str(compiled), params)
        if not mysql:
            return [str(row[0]) for row in result]
        keys = list(result.keys())
        return [
            "  ".join(f"{key}={row[keys.index(key)]}" for key in MYSQL_PLAN_COLUMNS if key in keys) for row in result
        ]


def _indexes(plan: list[str]) -> list[str]:
    """The saga indexes a plan reads, in the order it names them."""
    return list(dict.fromkeys(name for line in plan for name in re.findall(r"\bix_sagas_\w+", line)))


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A database of its own on the server of `admin_url`, dropped afterwards; ConnectionError if it does not answer."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    mysql = admin_url.startswith("mysql")
    quote = "`" if mysql else '"'
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", hide_parameters=True)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {quote}{name}{quote}")
    except Exception as error:  # any failure to reach the server: this engine is skipped, and the reason kept
        admin.dispose()
        raise ConnectionError(f"{type(error).__name__}: the server did not answer") from None
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            force = "" if mysql else " WITH (FORCE)"
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}")
        admin.dispose()

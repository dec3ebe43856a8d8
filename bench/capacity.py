"""The database tier under load (issue 28): the purchase steps' real transactions from N worker processes at once,
on PostgreSQL and on MySQL, each in a throwaway database migrated to the newest revision.

Each run records a batch of purchase sagas RUNNING, then `workers` processes (forked, one connection each) run
reserve_stock, process_payment and confirm_sale for their share of them through the step runner (`run_step`, as
the step Lambdas do: the saga's row, its audit, its version, the Redis cache), each step timed. There is no engine
and no Lambda. The payment provider's call is answered in-process: the steps' database transactions are what is
measured, not the provider (a separate service, sized on its own). A step that fails with an error its Task
retries (ConcurrentUpdate, DatabaseUnavailable) runs again as the retry would, and is counted.

Three layouts: `spread` (each saga one unit of a random one of 1,000 products), `hot` (every saga the same product,
its stock in `stock.BUCKETS` buckets) and `hot_one_row` (the same, in one bucket: the one row per product of the
design before issue 28). After each run the invariants of docs/design.md §4 that the database holds are checked
(infra/tools/invariants.py), then the run's sagas are cleared and each product's stock taken as its new start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import event, func, insert, select, update

from bench.listing import ADMIN_URLS, throwaway_database
from bench.stats import summary_ms
from chalicelib.adapters import database
from chalicelib.adapters.payment_provider import CURRENCY, Charge
from chalicelib.adapters.tables import Base, Product, StockBucket
from chalicelib.domain import payments, purchase, saga_log, stock
from chalicelib.domain.contracts import PurchaseRequest, StepEvent
from chalicelib.domain.errors import ConcurrentUpdate, DatabaseUnavailable
from chalicelib.service.step_runner import run_step
from chalicelib.settings import get_settings
from infra.tools import invariants
from payment_provider import tokens

ENGINES = {"postgres": ADMIN_URLS["PostgreSQL"], "mysql": ADMIN_URLS["MySQL"]}
STEPS = (purchase.reserve_stock, purchase.process_payment, purchase.confirm_sale)
SPREAD_PRODUCTS = 1_000
STOCK = 1_000_000
"""Each product's: enough for every run."""
LAYOUTS = ("spread", "hot", "hot_one_row")
HOT_SKU, HOT_ONE_ROW_SKU = "CAP-HOT", "CAP-HOT-ONE-ROW"
RETRIES = 6
"""As the steps' Retry for these errors allows (infra/statemachines)."""
COUNTED = ("transactions", "statements")
KEPT_TABLES = {Product.__tablename__, StockBucket.__tablename__, "alembic_version"}


def run(sagas: int, workers: Sequence[int], engines: Sequence[str], progress: Callable[[str], None]) -> dict[str, Any]:
    """Per engine, per worker count, per layout: sagas per second and each step's p50/p99."""
    measured: dict[str, Any] = {}
    counted: dict[str, Any] = {}
    for name in engines:
        try:
            with throwaway_database(ENGINES[name], "saga_bench_capacity") as url:
                measured[name], counts = _engine(url, sagas, workers, _prefixed(progress, name))
                counted = counted or counts
        except ConnectionError as error:
            measured[name] = {"skipped": str(error)}
            progress(f"{name}: not measured ({error})")
    return {
        "db": measured,
        "transactions_per_saga": counted.get("transactions", {}),
        "statements_per_saga": counted.get("statements", {}),
        "sagas_per_run": sagas,
        "buckets": stock.BUCKETS,
        "payment_provider": "answered in-process: the steps' database transactions are measured, not the provider",
        "machine": {"cores": os.cpu_count() or 1},
    }


def _prefixed(progress: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda line: progress(f"{name}: {line}")


def _engine(
    url: str, sagas: int, workers: Sequence[int], progress: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = get_settings()
    saved = settings.database_url, settings.allow_faults
    settings.database_url, settings.allow_faults = url, False
    database.reset_engine()
    charge, payments.charge = payments.charge, _charged
    try:
        database.migrate(url)
        _seed()
        with database.get_engine().connect() as connection:
            server = str(connection.exec_driver_sql("SELECT VERSION()").scalar()).split(" on ")[0].split(",")[0]
        _warm_up()
        rows: dict[str, Any] = {}
        counts: dict[str, Any] = {}
        for count in workers:
            began = time.perf_counter()
            rows[str(count)] = _round(count, sagas)
            for layout, row in rows[str(count)].items():
                counts = counts or row.pop("counts")
                row.pop("counts", None)
                progress(
                    f"{count:>2} workers, {layout:<11} {row['sagas_per_second']:7.1f} sagas/s, "
                    + ", ".join(f"{step} p50 {t['p50_ms']:.1f} ms" for step, t in row["steps"].items())
                    + f", {row['retries']} retried, invariants {'held' if not row['violations'] else 'BROKEN'}"
                )
            progress(f"{count:>2} workers took {time.perf_counter() - began:.0f} s")
        top = str(max(workers))
        spread = rows[top]["spread"]["sagas_per_second"]
        return {
            "server": server,
            "workers": rows,
            "hot_over_spread": rows[top]["hot"]["sagas_per_second"] / spread,
            "hot_one_row_over_spread": rows[top]["hot_one_row"]["sagas_per_second"] / spread,
            "at_workers": int(top),
        }, counts
    finally:
        settings.database_url, settings.allow_faults = saved
        payments.charge = charge
        database.reset_engine()


def _warm_up() -> None:
    """One saga through the steps here, before the workers are forked: they start with the statements compiled."""
    [saga_id] = _record_sagas("spread", 1)
    for step in STEPS:
        _run_step(step, saga_id)
    _clear()


def _seed() -> None:
    """1,000 products for the spread runs, and the hot product twice: in buckets, and in one row."""
    products = [(f"CAP-{n:04d}", STOCK, stock.BUCKETS) for n in range(SPREAD_PRODUCTS)]
    products += [(HOT_SKU, STOCK, stock.BUCKETS), (HOT_ONE_ROW_SKU, STOCK, 1)]
    with database.UnitOfWork() as uow:
        uow.session.execute(
            insert(Product),
            [
                {"sku": sku, "name": sku, "price_cents": 1_000, "initial_on_hand": units, "buckets": buckets}
                for sku, units, buckets in products
            ],
        )
        uow.session.execute(
            insert(StockBucket),
            [
                {"sku": row.sku, "bucket": row.bucket, "on_hand": row.on_hand, "reserved": 0}
                for sku, units, buckets in products
                for row in stock.new_buckets(sku, units, buckets)
            ],
        )
        uow.commit()


def _round(workers: int, sagas: int) -> dict[str, dict[str, Any]]:
    """Each layout twice, in the order A B C then C B A, so that a drift in the machine's other load weighs on
    all of them alike; the layout's sagas per second over both."""
    runs: dict[str, list[dict[str, Any]]] = {layout: [] for layout in LAYOUTS}
    for layout in (*LAYOUTS, *reversed(LAYOUTS)):
        runs[layout].append(_run(layout, sagas, workers))
    return {layout: _combined(measured) for layout, measured in runs.items()}


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = {step: [t for run in runs for t in run["times"][step]] for step in runs[0]["times"]}
    completed = sum(run["sagas"] - run["failed"] for run in runs)
    return {
        "sagas_per_second": completed / sum(run["elapsed"] for run in runs),
        "steps": {step: _percentiles(seconds) for step, seconds in times.items()},
        "sagas": sum(run["sagas"] for run in runs),
        "failed": sum(run["failed"] for run in runs),
        "retries": sum(run["retries"] for run in runs),
        "violations": [problem for run in runs for problem in run["violations"]][:10],
        "counts": runs[0]["counts"],
    }


def _run(layout: str, sagas: int, workers: int) -> dict[str, Any]:
    saga_ids = _record_sagas(layout, sagas)
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(workers + 1)
    pipes = []
    processes = []
    for number in range(workers):
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(saga_ids[number::workers], ready, sending), daemon=True)
        process.start()
        sending.close()
        pipes.append(receiving)
        processes.append(process)
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker could not start: its report says why
        ready.wait()
    began = time.perf_counter()
    reports = [pipe.recv() for pipe in pipes]
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    if errors := sorted({report["error"] for report in reports if "error" in report}):
        raise RuntimeError(f"{len(errors)} kind(s) of worker failure: {'; '.join(errors)}")
    times: dict[str, list[float]] = {step.__name__: [] for step in STEPS}
    for report in reports:
        for step, seconds in report["times"].items():
            times[step] += seconds
    failed = [saga for report in reports for saga in report["failed"]]
    with database.UnitOfWork() as uow:
        violations = invariants.violations(uow.session)
    _clear()
    return {
        "elapsed": elapsed,
        "times": times,
        "sagas": len(saga_ids),
        "failed": len(failed),
        "retries": sum(report["retries"] for report in reports),
        "violations": violations[:10] + [f"{len(failed)} sagas not completed"] * bool(failed),
        "counts": _per_saga_counts(reports),
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    summary = summary_ms(seconds)
    return {"p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"]}


def _per_saga_counts(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The median transactions (commits) and statements of each step of a saga."""
    counts: dict[str, Any] = {}
    for kind in ("transactions", "statements"):
        per_step = {
            step: statistics.median_low([n for report in reports for n in report[kind][step]])
            for step in reports[0][kind]
        }
        counts[kind] = per_step | {"total": sum(per_step.values())}
    return counts


def _record_sagas(layout: str, sagas: int) -> list[str]:
    """`sagas` purchases of one unit, RUNNING, as the API records them before their execution starts."""
    # Which product a saga buys, the same each run: no secret.
    pick = random.Random(sagas)  # noqa: S311  # nosec B311
    with database.UnitOfWork() as uow:
        ids = []
        for number in range(sagas):
            sku = {"hot": HOT_SKU, "hot_one_row": HOT_ONE_ROW_SKU}.get(layout) or f"CAP-{pick.randrange(1000):04d}"
            request = PurchaseRequest(customer_id=f"c-{number}", sku=sku, quantity=1, payment_token=tokens.APPROVES)
            ids.append(saga_log.create_saga(uow.session, request).id)
        uow.commit()
    return ids


def _clear() -> None:
    """Forget the run's sagas; each product's stock now is its new start (invariant 1 counts from there)."""
    with database.get_engine().begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in KEPT_TABLES:
                connection.execute(table.delete())
        on_hand = select(func.sum(StockBucket.on_hand)).where(StockBucket.sku == Product.sku).scalar_subquery()
        connection.execute(update(Product).values(initial_on_hand=on_hand))


def _charged(saga_id: str, payment_token: str, amount_cents: int, asked_since: datetime) -> Charge:
    """The provider's answer, given in-process: its own cost is not what this part measures."""
    return Charge(f"ch_{uuid.uuid4().hex}", saga_id, amount_cents, CURRENCY, "captured", 0)


def _worker(saga_ids: list[str], ready: Any, results: Connection) -> None:
    try:
        report = _work(saga_ids, ready)
    except BaseException as error:  # told to the parent, which stops the run with it
        report = {"error": f"{type(error).__name__}: {error}"}
        ready.abort()
    results.send(report)
    results.close()


def _work(saga_ids: list[str], ready: Any) -> dict[str, Any]:
    engine = database.get_engine()
    engine.dispose(close=False)  # the parent's connections stay the parent's; the compiled statements are kept
    counted: Counter[str] = Counter()
    event.listen(engine, "commit", lambda *_: counted.update(["transactions"]))
    event.listen(engine, "before_cursor_execute", lambda *_: counted.update(["statements"]))
    with engine.connect():  # the connection opened before the clock starts
        pass
    names = [step.__name__ for step in STEPS]
    times: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, dict[str, list[int]]] = {kind: {name: [] for name in names} for kind in COUNTED}
    retries, failed = 0, []
    ready.wait()
    for saga_id in saga_ids:
        for step in STEPS:
            before = Counter(counted)
            began = time.perf_counter()
            attempts, done = _run_step(step, saga_id)
            times[step.__name__].append(time.perf_counter() - began)
            for kind in counts:
                counts[kind][step.__name__].append(counted[kind] - before[kind])
            retries += attempts - 1
            if not done:
                failed.append(saga_id)
                break
    return {"times": times, "retries": retries, "failed": failed} | counts


def _run_step(step: Any, saga_id: str) -> tuple[int, bool]:
    """Run `step` as its Task would, retrying what its Retry retries: the attempts it took, and whether one worked."""
    for retry in range(RETRIES + 1):
        try:
            run_step(step, StepEvent(saga_id=saga_id, retry_count=retry))
            return retry + 1, True
        except (ConcurrentUpdate, DatabaseUnavailable):
            time.sleep(0.01 * 2**retry)
    return RETRIES + 1, False

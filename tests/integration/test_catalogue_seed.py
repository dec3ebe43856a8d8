"""Two processes that seed the catalogue at once on one database (`make run` beside `make bench`) both start:
the one whose insert comes second waits for the other's commit, finds the key taken, and looks again."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete, func, select, text

from chalicelib.adapters import database
from chalicelib.adapters.tables import Product, StockBucket
from chalicelib.domain import catalogue
from chalicelib.domain.stock import BUCKETS
from chalicelib.service import products
from tests.conftest import Backend

WAITING_ON_A_LOCK = {
    "postgres": "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    # MariaDB's innodb_trx is a cache that may show the wait late: the INSERT still at work shows it.
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = database()"
    " AND info LIKE 'INSERT INTO products%'",
}


@pytest.mark.backends("postgres", "mysql")  # a second insert waits on the first's uncommitted key: the servers' locks
def test_a_seed_that_waited_on_another_seeders_rows_looks_again_and_adds_none(backend: Backend) -> None:
    with database.UnitOfWork() as uow:
        uow.session.execute(delete(StockBucket))
        uow.session.execute(delete(Product))
        uow.commit()

    with database.UnitOfWork() as first, ThreadPoolExecutor(max_workers=1) as pool:
        assert catalogue.seed(first.session) == len(catalogue.SEED_PRODUCTS)
        first.session.flush()
        second = pool.submit(products.seed_catalogue)
        _wait_until_a_transaction_waits_on_a_lock(backend.name)
        first.commit()

        assert second.result(timeout=60) == 0

    with database.UnitOfWork() as uow:
        skus = uow.session.scalars(select(Product.sku).order_by(Product.sku)).all()
        buckets = uow.session.scalar(select(func.count()).select_from(StockBucket))
    assert skus == sorted(sku for sku, *_ in catalogue.SEED_PRODUCTS)
    assert buckets == BUCKETS * len(skus)


def _wait_until_a_transaction_waits_on_a_lock(backend: str) -> None:
    deadline = time.monotonic() + 30
    with database.get_engine().connect() as connection:
        while time.monotonic() < deadline:
            if connection.execute(text(WAITING_ON_A_LOCK[backend])).scalar_one() > 0:
                return
            connection.rollback()
            time.sleep(0.02)
    raise AssertionError("the second seeder never waited on the first's rows")

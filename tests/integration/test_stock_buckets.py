"""A product's stock in buckets (docs/design.md §4.1): reservations draw from one bucket each, a large one gathers
units into one bucket, concurrent ones never oversell, and units released, sold back or returned go to their bucket."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from chalicelib.adapters import database, step_functions
from chalicelib.adapters.database_errors import Transience, transience
from chalicelib.adapters.tables import Reservation
from chalicelib.domain import stock
from chalicelib.service import sagas
from infra.engine.local_engine import LocalEngine
from payment_provider import tokens
from tests.conftest import Backend
from tests.helpers import assert_consistent, finish, give_back, product, purchase, set_stock, stock_buckets

SKU = "SKU-WEBCAM"


def _reservation_bucket(saga_id: str) -> int:
    with database.UnitOfWork() as uow:
        return uow.session.scalars(select(Reservation.bucket).where(Reservation.saga_id == saga_id)).one()


def test_a_reservation_larger_than_any_bucket_but_within_the_stock_is_held_in_one_bucket(backend: Backend) -> None:
    set_stock(SKU, 40, buckets=8)

    with database.UnitOfWork() as uow:
        bucket = stock.reserve(uow.session, SKU, 30, first=3)
        uow.commit()

    assert bucket is not None
    rows = {number: (on_hand, reserved) for number, on_hand, reserved in stock_buckets(SKU)}
    assert rows[bucket][1] == 30 and rows[bucket][0] >= 30
    assert sum(on_hand for on_hand, _ in rows.values()) == 40
    assert sum(reserved for _, reserved in rows.values()) == 30
    assert all(0 <= reserved <= on_hand for on_hand, reserved in rows.values())


def test_a_purchase_larger_than_any_bucket_completes_and_one_larger_than_the_stock_is_rejected(
    backend: Backend, engine: LocalEngine
) -> None:
    set_stock(SKU, 40, buckets=8)

    bought = finish(engine, sagas.start_saga(purchase(sku=SKU, quantity=30), step_functions.start_execution).id)
    refused = finish(engine, sagas.start_saga(purchase(sku=SKU, quantity=11), step_functions.start_execution).id)

    assert (bought.status, refused.status) == ("COMPLETED", "REJECTED")
    assert (product(SKU).on_hand, product(SKU).reserved) == (10, 0)
    assert_consistent()


CONFLICT_TRIES = 8


def test_concurrent_reservations_of_one_product_never_oversell_it(backend: Backend) -> None:
    """Each reservation ends granted, refused, or (its tries spent on conflicts) given up, as a step's Retry
    would: none is lost, and only those granted hold units."""
    set_stock(SKU, 50, buckets=8)
    outcomes: dict[str, list[int]] = {"granted": [], "refused": [], "given up": []}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reserve(quantity: int, seed: int) -> None:
        jitter = random.Random(seed)  # nosec B311: the Retry's full jitter, not a secret
        outcome = "given up"
        try:
            for tries in range(CONFLICT_TRIES):
                try:
                    with database.UnitOfWork() as uow:
                        bucket = stock.reserve(uow.session, SKU, quantity, stock.first_bucket(8))
                        if bucket is not None:
                            uow.commit()
                    outcome = "refused" if bucket is None else "granted"
                    break
                except DBAPIError as error:
                    if transience(error) is not Transience.CONFLICT:
                        raise
                    time.sleep(jitter.uniform(0, 0.01 * 2**tries))
        except BaseException as error:  # the main thread reports it
            with lock:
                errors.append(error)
            return
        with lock:
            outcomes[outcome].append(quantity)

    wanted = [1 + n % 3 for n in range(40)]  # 80 units asked for, 50 there
    threads = [threading.Thread(target=reserve, args=(quantity, n)) for n, quantity in enumerate(wanted)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(quantity for ended in outcomes.values() for quantity in ended) == sorted(wanted)
    granted, refused = outcomes["granted"], outcomes["refused"]
    rows = stock_buckets(SKU)
    assert all(0 <= reserved <= on_hand for _, on_hand, reserved in rows), rows
    assert sum(on_hand for _, on_hand, _ in rows) == 50
    assert sum(reserved for _, _, reserved in rows) == sum(granted) <= 50
    left = 50 - sum(granted)
    assert refused and all(quantity > left for quantity in refused), (left, Counter(refused), outcomes["given up"])


def test_released_and_returned_units_go_back_to_the_bucket_they_came_from(
    backend: Backend, engine: LocalEngine
) -> None:
    set_stock(SKU, 40, buckets=8)
    declined = finish(
        engine,
        sagas.start_saga(purchase(sku=SKU, quantity=2, token=tokens.DECLINES), step_functions.start_execution).id,
    )
    assert declined.status == "COMPENSATED"
    assert stock_buckets(SKU) == [(number, 5, 0) for number in range(8)]

    bought = finish(engine, sagas.start_saga(purchase(sku=SKU, quantity=3), step_functions.start_execution).id)
    bucket = _reservation_bucket(bought.saga_id)
    assert stock_buckets(SKU)[bucket] == (bucket, 2, 0)

    returned = finish(
        engine,
        sagas.start_saga(give_back(bought.result["order_id"], quantity=2), step_functions.start_execution).id,
    )
    assert returned.status == "COMPLETED"
    assert stock_buckets(SKU)[bucket] == (bucket, 4, 0)
    assert_consistent()

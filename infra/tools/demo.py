"""`make demo`: migrate, seed, then run every saga path through the local engine and show what happened.

Exits non-zero if any saga ends in another status than expected, or an invariant of docs/design.md §4 breaks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from chalicelib.adapters import database, payment_provider, step_functions
from chalicelib.adapters.tables import Order, Payment, Product, Refund, Saga
from chalicelib.domain.contracts import PurchaseRequest, ReturnRequest, SagaRequest, SagaStatus
from chalicelib.observability import telemetry
from chalicelib.service import operator_actions, products, sagas
from chalicelib.settings import get_settings
from infra.engine import preflight
from infra.engine.local_engine import LocalEngine
from infra.tools import invariants
from payment_provider import tokens

ENTER_TIMEOUT_SECONDS = 120.0
ENTER_POLL_SECONDS = 0.05
RETRY_WAIT_SCALE = 0.05
"""The demo shortens Retry waits twenty-fold so a saga whose compensation keeps failing ends in seconds."""

SKU = "SKU-KEYBOARD"
SCARCE_SKU = "SKU-MONITOR"
CUSTOMER = "demo-customer"
"""Who buys and returns in every scenario: a return names the customer who bought the order."""


@dataclass(frozen=True)
class Scenario:
    title: str
    expected: SagaStatus
    request: Callable[[dict[str, str]], SagaRequest]
    """Builds the request from the order ids of earlier scenarios (by their key)."""
    key: str = ""
    cancel_at: str = ""
    """A state the saga is cancelled in, by an operator, once its execution has entered it."""


def _purchase(token: str = tokens.APPROVES, quantity: int = 2, faults: dict[str, str] | None = None) -> PurchaseRequest:
    return PurchaseRequest(customer_id=CUSTOMER, sku=SKU, quantity=quantity, payment_token=token, faults=faults or {})


def _return(
    order_key: str, quantity: int, faults: dict[str, str] | None = None
) -> Callable[[dict[str, str]], ReturnRequest]:
    return lambda orders: ReturnRequest(
        customer_id=CUSTOMER, order_id=orders[order_key], quantity=quantity, reason="demo return", faults=faults or {}
    )


def _too_many(_: dict[str, str]) -> PurchaseRequest:
    with database.UnitOfWork() as uow:
        product = uow.session.get_one(Product, SCARCE_SKU)
        wanted = product.available + 1
    return PurchaseRequest(customer_id=CUSTOMER, sku=SCARCE_SKU, quantity=wanted, payment_token=tokens.APPROVES)


SCENARIOS = (
    Scenario("purchase, tok_visa", SagaStatus.COMPLETED, lambda _: _purchase(), key="visa"),
    Scenario("purchase of more than is in stock", SagaStatus.REJECTED, _too_many),
    Scenario("purchase, tok_declined", SagaStatus.COMPENSATED, lambda _: _purchase("tok_declined")),
    Scenario("purchase, tok_flaky", SagaStatus.COMPLETED, lambda _: _purchase("tok_flaky"), key="flaky"),
    Scenario(
        "purchase, confirm_sale fails", SagaStatus.COMPENSATED, lambda _: _purchase(faults={"confirm_sale": "fail"})
    ),
    Scenario(
        "purchase, confirm_sale and refund_payment fail",
        SagaStatus.FAILED,
        lambda _: _purchase(faults={"confirm_sale": "fail", "refund_payment": "fail"}),
    ),
    Scenario(
        "purchase cancelled while paying (timeout:1)",
        SagaStatus.CANCELLED,
        lambda _: _purchase(faults={"process_payment": "timeout:1"}),
        cancel_at="ProcessPayment",
    ),
    Scenario("return of part of an order", SagaStatus.COMPLETED, _return("visa", 1)),
    Scenario("return of more than was bought", SagaStatus.REJECTED, _return("visa", 3)),
    Scenario("return, update_stock fails", SagaStatus.COMPENSATED, _return("flaky", 1, {"update_stock": "fail"})),
)


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    telemetry.quiet()
    settings = get_settings()
    if not settings.allow_faults:
        print("The demo injects faults: run it with SAGA_ALLOW_FAULTS=true (make demo does).", file=sys.stderr)
        return 2
    preflight.check_stores()
    where = preflight.describe_database(settings.effective_database_url)
    redis = "Redis" if settings.redis_url else "embedded Redis (fakeredis on loopback)"
    print(f"Data: {where}; cache: {redis}; retry waits x{RETRY_WAIT_SCALE}.")
    database.migrate()
    products.seed_catalogue()

    with LocalEngine(retry_wait_scale=RETRY_WAIT_SCALE) as engine:
        return run_scenarios(
            lambda request: sagas.start_saga(request, step_functions.start_execution).id,
            lambda saga_id: engine.wait(execution_arn(saga_id)),
            lambda saga_id: operator_actions.cancel(saga_id, sagas.LOCAL_CALLER),
        )


def execution_arn(saga_id: str) -> str:
    with database.UnitOfWork() as uow:
        return str(uow.session.get_one(Saga, saga_id).execution_arn)


def wait_until_entered(saga_id: str, state: str, history: Callable[[str], list[dict[str, Any]]]) -> None:
    """Until the saga's execution has entered `state` (its history read by `history`, given the execution's ARN)."""
    deadline = time.monotonic() + ENTER_TIMEOUT_SECONDS
    arn = execution_arn(saga_id)
    while state not in [name for name, _ in step_functions.states_entered(history(arn))]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"saga {saga_id} did not enter {state} in {ENTER_TIMEOUT_SECONDS:.0f} s")
        time.sleep(ENTER_POLL_SECONDS)


def run_scenarios(
    start: Callable[[SagaRequest], str],
    wait: Callable[[str], object],
    cancel: Callable[[str], object],
    history: Callable[[str], list[dict[str, Any]]] = step_functions.execution_history,
) -> int:
    """Every scenario in turn, started by `start` (which gives the saga's id), cancelled by `cancel` when the
    scenario says so (once `history`, an execution's history by its ARN, shows it entered the state), and waited
    for by `wait` (given that id, it returns once the saga's execution has ended); prints the table, then checks
    the invariants.

    Returns the exit status: 1 if a saga ended otherwise than expected or an invariant broke.
    """
    orders: dict[str, str] = {}
    mismatches = 0
    print(f"{'#':>2}  {'scenario':<47} {'saga':<8}  {'expected':<11} {'actual':<11} path / effect")
    for number, scenario in enumerate(SCENARIOS, 1):
        request = scenario.request(orders)
        before = _snapshot(request)
        started = time.monotonic()
        saga_id = start(request)
        if scenario.cancel_at:
            wait_until_entered(saga_id, scenario.cancel_at, history)
            cancel(saga_id)
        wait(saga_id)
        elapsed = time.monotonic() - started
        with database.UnitOfWork() as uow:
            final = uow.session.get_one(Saga, saga_id)
            status, result, arn = final.status, final.result, str(final.execution_arn)
        if scenario.key and "order_id" in result:
            orders[scenario.key] = result["order_id"]
        ok = status == scenario.expected
        mismatches += not ok
        path = " > ".join(
            f"{name}x{attempts}" if attempts > 1 else name
            for name, attempts in step_functions.states_entered(step_functions.execution_history(arn))
        )
        mark = "ok" if ok else "MISMATCH"
        print(
            f"{number:>2}  {scenario.title:<47} {saga_id[:8]}  {scenario.expected:<11} {status:<11} {mark}"
            f" ({elapsed:.2f}s)"
        )
        print(f"{'':>4}path:   {path}")
        print(f"{'':>4}effect: {_effect(before, _snapshot(request), saga_id)}")
    with database.UnitOfWork() as uow:
        broken = invariants.violations(uow.session, payment_provider.provider_client())
    for problem in broken:
        print(f"invariant broken: {problem}")
    verdict = "all" if not mismatches else f"{len(SCENARIOS) - mismatches} of"
    print(
        f"{verdict} {len(SCENARIOS)} scenarios ended as expected; "
        f"{'no invariant broken' if not broken else f'{len(broken)} invariant violations'}."
    )
    return 1 if mismatches or broken else 0


def _snapshot(request: SagaRequest) -> tuple[str, int, int]:
    with database.UnitOfWork() as uow:
        sku = request.sku if isinstance(request, PurchaseRequest) else SKU
        if isinstance(request, ReturnRequest):
            sku = uow.session.scalar(select(Order.sku).where(Order.id == request.order_id)) or SKU
        product = uow.session.get_one(Product, sku)
        return sku, product.on_hand, product.reserved


def _effect(before: tuple[str, int, int], after: tuple[str, int, int], saga_id: str) -> str:
    sku, on_hand, reserved = before
    stock = f"{sku} on_hand {on_hand}->{after[1]}, reserved {reserved}->{after[2]}"
    with database.UnitOfWork() as uow:
        payment = uow.session.scalar(select(Payment).where(Payment.saga_id == saga_id))
        refunds = list(uow.session.scalars(select(Refund).where(Refund.saga_id == saga_id)))
        failed = uow.session.get_one(Saga, saga_id).result.get("failed_compensation")
    money = [f"payment {payment.status} {payment.amount_cents / 100:.2f}"] if payment else []
    money += [f"refund {refund.status} {refund.amount_cents / 100:.2f}" for refund in refunds]
    effect = f"{stock}; {', '.join(money) or 'no money moved'}; provider: {_provider_view(saga_id, refunds)}"
    return f"{effect}; audit log: compensation {failed} FAILED" if failed else effect


def _provider_view(saga_id: str, refunds: list[Refund]) -> str:
    """What the payment provider's own ledger holds for the saga: its charge, or its return's refund."""
    provider = payment_provider.provider_client()
    charges = [charge for charge in provider.list_charges() if charge.saga_id == saga_id]  # the search by saga lags
    if charges:
        return "; ".join(
            f"charge {c.amount_cents / 100:.2f} captured, {c.refunded_cents / 100:.2f} refunded" for c in charges
        )
    issued = [provider.get_refund(r.provider_refund_id) for r in refunds if r.provider_refund_id]
    held = [f"refund {r.amount_cents / 100:.2f} {r.status}" for r in issued if r is not None]
    return ", ".join(held) or "nothing"


if __name__ == "__main__":
    sys.exit(preflight.run("make demo", main))

"""What every step Lambda does: parse the event, run the step once per (saga, step), answer."""

from __future__ import annotations

import logging
from typing import Any, cast

from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError
from pydantic import ValidationError

from chalicelib.contracts import StepEvent
from chalicelib.errors import InvalidStepEvent
from chalicelib.idempotency import idempotency_config, persistence_layer
from chalicelib.steps import StepFunction, run_step

logger = logging.getLogger(__name__)


def handle(step: StepFunction, event: Any, context: Any) -> dict[str, Any]:
    """Entry point body shared by the step Lambdas; raises the step's error by name on failure."""
    parsed = parse_event(event)
    config = idempotency_config(step.__name__)
    if context is not None:
        config.register_lambda_context(context)

    def run(event: dict[str, Any]) -> dict[str, Any]:
        return run_step(step, parsed)

    run_once = idempotent_function(
        data_keyword_argument="event",
        persistence_store=persistence_layer(step.__name__),
        config=config,
        key_prefix=f"saga-step.{step.__name__}",
    )(run)
    try:
        return cast(dict[str, Any], run_once(event=parsed.model_dump(mode="json")))
    except IdempotencyPersistenceLayerError:
        # Redis is out: the saga's unique rows in the database still make the step take effect once.
        logger.warning(
            "idempotency store unreachable; running %s for saga %s on the database alone",
            step.__name__,
            parsed.saga_id,
            exc_info=True,
        )
        return run_step(step, parsed)


def parse_event(event: Any) -> StepEvent:
    if not isinstance(event, dict):
        raise InvalidStepEvent(f"a step event is a JSON object, not {type(event).__name__}")
    try:
        return StepEvent.model_validate(event)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in error.errors())
        raise InvalidStepEvent(problems) from None

"""What every step Lambda does: parse the event, run the step once per (saga, step), answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pydantic import ValidationError

from chalicelib.adapters.idempotency import (
    IdempotencyPersistenceLayerError,
    idempotency_config,
    idempotent_function,
    persistence_layer,
)
from chalicelib.domain.contracts import StepEvent, saga_type_of
from chalicelib.domain.errors import InvalidStepEvent, safe_message
from chalicelib.entrypoints import snapstart  # noqa: F401 - registers the SnapStart hooks
from chalicelib.observability.metric_names import STEP_FAILURES, STEP_LATENCY
from chalicelib.observability.telemetry import Stopwatch, emit, logger, saga_scope, traced
from chalicelib.service.step_runner import StepFunction, compensation_failed, run_step


def handle(step: StepFunction, event: Any, context: Any) -> dict[str, Any]:
    """Entry point body shared by the step Lambdas; raises the step's error by name on failure.

    Logs one line per attempt, traces it as the subsegment `## <step>` and measures its latency and failures.
    """
    return _observed(step.__name__, lambda parsed: _run_once(step, parsed, context), event, context)


def handle_compensation_failed(event: Any, context: Any) -> dict[str, Any]:
    """Entry point body of `compensation_failed`, the Task on the path of a compensation that gave up."""
    request_id = getattr(context, "aws_request_id", None)
    return _observed("compensation_failed", lambda parsed: compensation_failed(parsed, request_id), event, context)


def _observed(name: str, run: Callable[[StepEvent], dict[str, Any]], event: Any, context: Any) -> dict[str, Any]:
    watch = Stopwatch()
    request_id = getattr(context, "aws_request_id", None)
    keys = {"step": name, "saga_type": saga_type_of(name), "function_request_id": request_id}
    try:
        parsed = parse_event(event)
    except InvalidStepEvent as error:
        with saga_scope(**keys):
            _failed(name, error, watch)
        raise
    scope = saga_scope(saga_id=parsed.saga_id, attempt=parsed.attempt, correlation_id=parsed.correlation_id, **keys)
    with scope, traced(f"## {name}"):
        try:
            result = run(parsed)
        except Exception as error:
            _failed(name, error, watch)
            raise
        latency = watch.milliseconds
        emit(STEP_LATENCY, latency, Step=name)
        logger.info("step succeeded", extra={"latency_ms": latency})
        return result


def _failed(name: str, error: Exception, watch: Stopwatch) -> None:
    latency = watch.milliseconds
    emit(STEP_LATENCY, latency, Step=name)
    emit(STEP_FAILURES, Step=name)
    logger.warning(
        "step failed",
        extra={"latency_ms": latency, "error_type": type(error).__name__, "error_message": safe_message(error)},
    )


def _run_once(step: StepFunction, parsed: StepEvent, context: Any) -> dict[str, Any]:
    """The step, once per (saga, step, attempt) through Powertools idempotency, or on the database alone if Redis
    is out (or none is configured). Each attempt has its own key: an attempt that crashed leaves its record in
    progress until its deadline, and the retry must not wait for that; the saga's rows in the database make any
    attempt find the effect of an earlier one."""
    request_id = getattr(context, "aws_request_id", None)
    persistence = persistence_layer(step.__name__)
    if persistence is None:
        return run_step(step, parsed, request_id)
    config = idempotency_config(step.__name__)
    if context is not None:
        config.register_lambda_context(context)

    def run(event: dict[str, Any]) -> dict[str, Any]:
        return run_step(step, parsed, request_id)

    run_once = idempotent_function(
        data_keyword_argument="event",
        persistence_store=persistence,
        config=config,
        key_prefix=f"saga-step.{step.__name__}",
    )(run)
    try:
        return cast(dict[str, Any], run_once(event=parsed.model_dump(mode="json")))
    except IdempotencyPersistenceLayerError:
        # Redis is out: the saga's unique rows in the database still make the step take effect once.
        logger.warning("idempotency store unreachable; running the step on the database alone", exc_info=True)
        return run_step(step, parsed, request_id)


def parse_event(event: Any) -> StepEvent:
    if not isinstance(event, dict):
        raise InvalidStepEvent(f"a step event is a JSON object, not {type(event).__name__}")
    try:
        return StepEvent.model_validate(event)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in error.errors())
        raise InvalidStepEvent(problems) from None

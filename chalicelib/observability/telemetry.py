"""Logs, traces and metrics of every entry point, through Powertools: JSON log lines, X-Ray subsegments and
CloudWatch embedded-metric-format (EMF) records.

Everything said inside `saga_scope` carries the saga's keys: its log lines as fields, its subsegments as the
`saga_id` annotation, its metrics as metadata. The keys live in a context variable, so concurrent handlers
(the local engine runs them on threads) keep their own.

Tracing follows Powertools' rule: on in Lambda, off elsewhere or with POWERTOOLS_TRACE_DISABLED=true. The
tracer is built only when on, because aws-xray-sdk costs a cold start hundreds of milliseconds.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from chalicelib.observability.metric_names import METRICS, NAMESPACE, SERVICE, SERVICE_DIMENSION

logger = Logger(service=SERVICE)
# Its JSON lines only: a root handler (Lambda's, a tool's) would print every record a second time.
logging.getLogger(SERVICE).propagate = False

TAGGED_KEYS = ("saga_id", "correlation_id")
"""The keys that also go on metrics (as metadata) and on subsegments (as annotations)."""


@contextmanager
def saga_scope(**keys: Any) -> Iterator[None]:
    """Attach `keys` (saga_id, saga_type, step, attempt, correlation_id...; None values are left out) to what is
    logged inside, and the TAGGED_KEYS among them to what is traced and measured."""
    present = {key: value for key, value in keys.items() if value is not None}
    earlier = logger.thread_safe_get_current_keys()
    logger.thread_safe_append_keys(**present)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(present)
        restored = {key: earlier[key] for key in present if key in earlier}
        if restored:
            logger.thread_safe_append_keys(**restored)


def quiet() -> None:
    """For tools that print their own report (demo, soak, cost): errors only, and no EMF records."""
    logger.setLevel("ERROR")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"


def current_keys() -> dict[str, Any]:
    return dict(logger.thread_safe_get_current_keys())


def emit(metric: str, value: float = 1, **dimensions: str) -> None:
    """One EMF record of `metric` with `dimensions` (its catalogue entry names them), tagged with the saga."""
    unit, names = METRICS[metric]
    if {SERVICE_DIMENSION, *dimensions} != set(names):
        raise ValueError(f"{metric} takes the dimensions {sorted(names)}, not {sorted(dimensions)}")
    metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    for name, dimension in dimensions.items():
        metrics.add_dimension(name=name, value=dimension)
    metrics.add_metric(name=metric, unit=MetricUnit(unit), value=value)
    for key, tag in _tags().items():
        metrics.add_metadata(key=key, value=tag)
    metrics.flush_metrics()


def tracing_enabled() -> bool:
    """Powertools' rule (Tracer._is_tracer_disabled), without importing the tracer to apply it."""
    disabled = resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false"))
    local = os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV)
    return bool(os.getenv(constants.LAMBDA_TASK_ROOT_ENV)) and not disabled and not local


@cache
def tracer() -> Any | None:
    """The Powertools Tracer when tracing is on, else None. (Any: aws-xray-sdk ships no type hints.)"""
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, auto_patch=False)


def reset_tracer() -> None:
    tracer.cache_clear()


@contextmanager
def traced(name: str, namespace: str | None = None, **metadata: Any) -> Iterator[Any | None]:
    """A subsegment `name` annotated with the saga id (and `metadata`), or nothing when tracing is off."""
    active = tracer()
    if active is None:
        yield None
        return
    with active.provider.in_subsegment(name) as subsegment:
        if subsegment is not None:  # None when there is no segment to hang it on (X-Ray logs that)
            _annotate(subsegment, namespace, metadata)
        yield subsegment


def begin_traced(name: str, namespace: str | None = None, **metadata: Any) -> Any | None:
    """Like `traced`, for calls whose start and end arrive as separate events (SQLAlchemy's)."""
    active = tracer()
    if active is None:
        return None
    subsegment = active.provider.begin_subsegment(name)
    if subsegment is not None:
        _annotate(subsegment, namespace, metadata)
    return subsegment


def end_traced(subsegment: Any | None, error: BaseException | None = None) -> None:
    active = tracer()
    if active is None or subsegment is None:
        return
    if error is not None:
        subsegment.add_exception(error, traceback.extract_tb(error.__traceback__))
    active.provider.end_subsegment()


def _annotate(subsegment: Any, namespace: str | None, metadata: dict[str, Any]) -> None:
    if namespace:
        subsegment.namespace = namespace
    for key, tag in _tags().items():
        subsegment.put_annotation(key, tag)
    for key, value in metadata.items():
        subsegment.put_metadata(key, value, SERVICE)


def _tags() -> dict[str, Any]:
    keys = current_keys()
    return {key: keys[key] for key in TAGGED_KEYS if key in keys}


class Stopwatch:
    """Milliseconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def milliseconds(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

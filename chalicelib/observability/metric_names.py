"""The catalogue of our CloudWatch metrics (namespace, names, units, dimensions): what the code emits and the
dashboards query. Plain constants, no imports, so Lambda handlers and the dashboard checks can both read it."""

NAMESPACE = "SagaOrchestrator"
SERVICE = "saga-orchestrator"
"""The value of the `service` dimension every metric carries (Powertools' service name)."""

SERVICE_DIMENSION = "service"
SAGA_TYPE_DIMENSION = "SagaType"
OUTCOME_DIMENSION = "Outcome"
STEP_DIMENSION = "Step"
ACTION_DIMENSION = "Action"
"""An operator's action on a saga: `cancel` or `resolve`."""
DEFINITION_DIMENSION = "Definition"
"""The digest of the state machine definition an execution ran (StepEvent.definition)."""
UNVERSIONED = "none"
"""The `Definition` of an execution started before its events carried one."""

COUNT = "Count"
MILLISECONDS = "Milliseconds"

SAGAS_STARTED = "SagasStarted"
SAGAS_ENDED = "SagasEnded"
STEP_LATENCY = "StepLatency"
STEP_FAILURES = "StepFailures"
COMPENSATIONS_RUN = "CompensationsRun"
COMPENSATIONS_FAILED = "CompensationsFailed"
THROTTLE_RETRIES_EXHAUSTED = "ThrottleRetriesExhausted"
"""A forward step whose every attempt Lambda refused (its throttle retrier ran out): the saga is compensated, the
last resort (docs/design.md §2.4). Alarmed."""
DEFINITION_FAULTS = "DefinitionFaults"
"""A failure a Catch caught that no correct definition meets (a crash, a timeout, an unexpected exception; not a
business outcome nor an injected `fail`), counted once against the definition that ran: the canary's rollback alarm
(docs/design.md §7.3)."""
STUCK_SAGAS_FOUND = "StuckSagasFound"
"""Per reconciler pass: sagas RUNNING or COMPENSATING, quiet for the grace period, without a live execution."""
STUCK_SAGAS_RESUMED = "StuckSagasResumed"
"""Per reconciler pass: those of them whose next execution it started."""
OPERATOR_ACTIONS = "OperatorActions"
"""An operator's action that moved a saga (POST /sagas/{id}/cancel or /resolve), by `Action`."""

OUTCOMES = ("COMPLETED", "REJECTED", "COMPENSATED", "CANCELLED", "FAILED", "RESOLVED")
"""The values of `Outcome`: the final saga statuses (FAILED is final until an operator retries or resolves it)."""
OPERATOR_ACTION_NAMES = ("cancel", "resolve", "bulk_retry")
"""The values of `Action`."""

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    SAGAS_STARTED: (COUNT, (SERVICE_DIMENSION, SAGA_TYPE_DIMENSION)),
    SAGAS_ENDED: (COUNT, (SERVICE_DIMENSION, SAGA_TYPE_DIMENSION, OUTCOME_DIMENSION)),
    STEP_LATENCY: (MILLISECONDS, (SERVICE_DIMENSION, STEP_DIMENSION)),
    STEP_FAILURES: (COUNT, (SERVICE_DIMENSION, STEP_DIMENSION)),
    COMPENSATIONS_RUN: (COUNT, (SERVICE_DIMENSION, STEP_DIMENSION)),
    COMPENSATIONS_FAILED: (COUNT, (SERVICE_DIMENSION, STEP_DIMENSION)),
    THROTTLE_RETRIES_EXHAUSTED: (COUNT, (SERVICE_DIMENSION, SAGA_TYPE_DIMENSION, STEP_DIMENSION)),
    DEFINITION_FAULTS: (COUNT, (SERVICE_DIMENSION, SAGA_TYPE_DIMENSION, DEFINITION_DIMENSION)),
    STUCK_SAGAS_FOUND: (COUNT, (SERVICE_DIMENSION,)),
    STUCK_SAGAS_RESUMED: (COUNT, (SERVICE_DIMENSION,)),
    OPERATOR_ACTIONS: (COUNT, (SERVICE_DIMENSION, SAGA_TYPE_DIMENSION, ACTION_DIMENSION)),
}
"""Metric name -> (unit, the exact dimension names it is emitted with). CloudWatch matches a query only on
the exact dimension set, so a dashboard or alarm must name all of them."""

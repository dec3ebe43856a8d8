"""The metrics the saga orchestrator emits (CloudWatch EMF): one catalogue for the code and the dashboards."""

NAMESPACE = "SagaOrchestrator"
SERVICE = "saga-orchestrator"
"""Powertools adds `service` as a dimension to every metric."""

SAGAS_STARTED = "SagasStarted"
SAGAS_ENDED = "SagasEnded"
STEP_LATENCY = "StepLatency"
STEP_FAILURES = "StepFailures"
COMPENSATIONS_RUN = "CompensationsRun"
COMPENSATIONS_FAILED = "CompensationsFailed"

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    SAGAS_STARTED: ("Count", ("SagaType",)),
    SAGAS_ENDED: ("Count", ("SagaType", "Outcome")),
    STEP_LATENCY: ("Milliseconds", ("Step",)),
    STEP_FAILURES: ("Count", ("Step",)),
    COMPENSATIONS_RUN: ("Count", ("Step",)),
    COMPENSATIONS_FAILED: ("Count", ("Step",)),
}
"""Name -> (unit, dimensions besides `service`)."""

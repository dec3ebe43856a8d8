"""The published limits docs/capacity.md's model holds the measured per-saga costs against, each with the page
that states it. Read from those pages (AWS's and Stripe's documentation) on 2026-12-06; none is measured here.
Defaults for an account in US East (N. Virginia), US West (Oregon) or Europe (Ireland), where Step Functions'
quotas are the largest; new accounts start lower, and AWS raises them with use."""

from __future__ import annotations

from dataclasses import dataclass

READ_ON = "2026-12-06"
STEP_FUNCTIONS_QUOTAS = "https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"


@dataclass(frozen=True)
class Quota:
    name: str
    value: float
    unit: str
    burst: float | None
    """The token bucket's size, where the limit is a bucket refilled at `value` per second."""
    adjustable: bool
    source: str
    note: str = ""


STANDARD_START_EXECUTION = Quota(
    "Step Functions Standard StartExecution",
    300,
    "calls/s",
    1_300,
    True,
    STEP_FUNCTIONS_QUOTAS,
    "per account and Region; 150/s refill and 800 bucket in the other Regions",
)
STANDARD_STATE_TRANSITIONS = Quota(
    "Step Functions Standard state transitions",
    1_500,
    "transitions/s",
    5_000,
    True,
    STEP_FUNCTIONS_QUOTAS,
    "per account and Region, shared by every Standard state machine; 500/s and 800 elsewhere",
)
EXPRESS_START_EXECUTION = Quota(
    "Step Functions Express StartExecution",
    6_000,
    "calls/s",
    6_000,
    True,
    STEP_FUNCTIONS_QUOTAS,
    "Express state transitions are not throttled; an Express execution lasts at most 5 minutes",
)
EXPRESS_MAX_SECONDS = 300
LAMBDA_CONCURRENCY = Quota(
    "Lambda concurrent executions",
    1_000,
    "executions at once",
    None,
    True,
    "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html",
    "per account and Region, shared by every function; raised to tens of thousands on request",
)
LAMBDA_SCALING_RATE = Quota(
    "Lambda concurrency scaling rate",
    100,
    "new execution environments/s per function",
    1_000,
    False,
    "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html",
    "1,000 execution environments every 10 seconds, for each function",
)
API_GATEWAY_ACCOUNT = Quota(
    "API Gateway account throttle",
    10_000,
    "requests/s",
    5_000,
    True,
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    "per account and Region across REST, HTTP and WebSocket APIs; the burst is set by AWS",
)
STRIPE_LIVE_WRITES = Quota(
    "Stripe live-mode writes",
    100,
    "write operations/s",
    None,
    True,
    "https://docs.stripe.com/rate-limits",
    "100 reads and 100 writes per second; increases through Stripe Support, 6 weeks ahead for large ones",
)
RDS_PROXY_POOL = Quota(
    "RDS Proxy connection pool",
    5_000,
    "database connections",
    None,
    True,
    "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-connections.html",
    "MaxConnectionsPercent (default 100) of the database's max_connections, which RDS for PostgreSQL sets to "
    "LEAST(DBInstanceClassMemory/9531392, 5000): 5,000 on a 512 GiB instance",
)
LARGEST_DB_INSTANCE_VCPUS = Quota(
    "RDS instance cores (db.r6g.16xlarge)",
    64,
    "vCPUs",
    None,
    False,
    "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Summary.html",
    "one writer: past it, the rows must be split between databases (by SKU)",
)
ELASTICACHE_NODE = Quota(
    "ElastiCache node (Redis 7.1, r7g.4xlarge)",
    1_000_000,
    "commands/s",
    None,
    False,
    "https://aws.amazon.com/blogs/database/achieve-over-500-million-requests-per-second-per-cluster-with-amazon-"
    "elasticache-for-redis-7-1/",
    "AWS's own benchmark, 'over 1 million requests per second per node'; smaller nodes serve less",
)

QUOTAS = (
    STANDARD_START_EXECUTION,
    STANDARD_STATE_TRANSITIONS,
    EXPRESS_START_EXECUTION,
    LAMBDA_CONCURRENCY,
    LAMBDA_SCALING_RATE,
    API_GATEWAY_ACCOUNT,
    STRIPE_LIVE_WRITES,
    RDS_PROXY_POOL,
    LARGEST_DB_INSTANCE_VCPUS,
    ELASTICACHE_NODE,
)

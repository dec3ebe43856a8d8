"""Cold-start reference: a handler that imports and builds everything up front, the way library examples do."""

from typing import Any

import boto3
import redis
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer
from pydantic import BaseModel
from sqlalchemy import create_engine

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Bench")
engine = create_engine("postgresql+pg8000://bench@127.0.0.1:1/bench")
persistence = CachePersistenceLayer(client=redis.Redis())  # type: ignore[arg-type]
config = IdempotencyConfig(event_key_jmespath="saga_id")
stepfunctions = boto3.client("stepfunctions", region_name="us-east-1")


class Event(BaseModel):
    saga_id: str


@idempotent_function(data_keyword_argument="event", persistence_store=persistence, config=config)  # type: ignore[untyped-decorator]
def step(event: dict[str, Any]) -> dict[str, Any]:
    return {"saga_id": event["saga_id"]}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return {"saga_id": Event.model_validate(event).saga_id}

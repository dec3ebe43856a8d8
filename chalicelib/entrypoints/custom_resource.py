"""A CloudFormation custom resource backed by a Lambda function: run an action on Create and Update, nothing on
Delete, and answer CloudFormation ourselves.

CloudFormation waits for the answer as a JSON response object PUT to the pre-signed S3 URL of the request
(`ResponseURL`), not for the function's return value; `Status` FAILED fails the stack operation, which rolls
back. The object is at most 4,096 bytes, and `PhysicalResourceId` must stay the same on every answer for the
resource (a new one would make CloudFormation replace it and delete the old one).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.observability.telemetry import logger

Action = Callable[[dict[str, Any]], dict[str, str]]
"""The resource's properties -> the `Data` to answer with (short strings: the answer is at most 4,096 bytes)."""
MAX_REASON = 1000
SEND_TRIES = 3
SEND_TIMEOUT_SECONDS = 30


class CustomResourceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    request_type: Literal["Create", "Update", "Delete"] = Field(alias="RequestType")
    response_url: str = Field(alias="ResponseURL")
    stack_id: str = Field(alias="StackId")
    request_id: str = Field(alias="RequestId")
    logical_resource_id: str = Field(alias="LogicalResourceId")
    physical_resource_id: str | None = Field(default=None, alias="PhysicalResourceId")
    resource_properties: dict[str, Any] = Field(default_factory=dict, alias="ResourceProperties")


def is_request(event: Any) -> bool:
    return isinstance(event, dict) and "RequestType" in event and "ResponseURL" in event


def handle(event: dict[str, Any], context: Any, action: Action) -> dict[str, Any]:
    """Run `action` on Create and Update (a failure answers FAILED), do nothing on Delete; send the answer."""
    request = CustomResourceRequest.model_validate(event)
    status, reason, data = "SUCCESS", "", {}
    if request.request_type != "Delete":
        try:
            data = action(request.resource_properties)
        except Exception as error:
            logger.exception("custom resource %s failed on %s", request.logical_resource_id, request.request_type)
            stream = getattr(context, "log_stream_name", "")
            status, reason = "FAILED", f"{type(error).__name__}: {error} (log stream {stream})"[:MAX_REASON]
    answer = {
        "Status": status,
        "Reason": reason or f"{request.request_type} done",
        "PhysicalResourceId": request.physical_resource_id or request.logical_resource_id,
        "StackId": request.stack_id,
        "RequestId": request.request_id,
        "LogicalResourceId": request.logical_resource_id,
        "Data": data,
    }
    _send(request.response_url, json.dumps(answer).encode())
    logger.info("custom resource answered", extra={"status": status, "request_type": request.request_type})
    return answer


def _send(url: str, body: bytes) -> None:
    """PUT the answer, with the empty Content-Type the pre-signed URL was signed for; a few tries."""
    if urlparse(url).scheme not in ("https", "http"):
        raise ValueError(f"not a response URL: {url[:100]!r}")
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    for tries_left in reversed(range(SEND_TRIES)):
        try:
            # The URL is CloudFormation's, its scheme checked above.
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS):  # noqa: S310  # nosec B310
                return
        except urllib.error.URLError:
            if not tries_left:
                raise
            logger.warning("could not send the custom resource's answer; trying again", exc_info=True)
            time.sleep(1)

"""Handlers that each do one thing a Lambda function can do, for the runtime's tests."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

print("basic: module imported")


class PaymentDeclined(Exception):
    """A business error, as the sagas raise them."""


def echo(event: Any, context: Any) -> dict[str, Any]:
    return {"event": event, "pid": os.getpid()}


def wait_for_release(event: dict[str, Any], context: Any) -> int:
    """Say it started (a file), then hold its execution environment until the test releases it (another file)."""
    Path(event["started_dir"], context.aws_request_id).touch()
    release = Path(event["release_file"])
    deadline = time.monotonic() + 20
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def sleep(event: dict[str, Any], context: Any) -> None:
    if "pid_file" in event:
        Path(event["pid_file"]).write_text(str(os.getpid()))
    time.sleep(event["seconds"])


def exit_after_marking(event: dict[str, Any], context: Any) -> None:
    Path(event["marker"]).write_text("the effect happened")
    os._exit(3)


def exit_quietly(event: Any, context: Any) -> None:
    sys.exit(0)


def kill_itself(event: Any, context: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def decline(event: Any, context: Any) -> None:
    raise PaymentDeclined("card declined")


def return_a_datetime(event: Any, context: Any) -> dict[str, Any]:
    return {"at": datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)}


def allocate(event: dict[str, Any], context: Any) -> int:
    block = b"\x01" * (event["mb"] * 1024 * 1024)
    return len(block)


def environment(event: Any, context: Any) -> dict[str, str]:
    return dict(os.environ)


def context_and_remaining_time(event: Any, context: Any) -> dict[str, Any]:
    first = context.get_remaining_time_in_millis()
    time.sleep(0.2)
    second = context.get_remaining_time_in_millis()
    return {
        "remaining": [first, second],
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "cwd": os.getcwd(),
        "sys_path_head": sys.path[:1],
    }


def chatty(event: Any, context: Any) -> str:
    print("printed to stdout")
    sys.stderr.write("written to stderr\n")
    logging.getLogger().warning("logged a warning")
    return "ok"


def interpreter(event: Any, context: Any) -> dict[str, Any]:
    return {"version": list(sys.version_info[:2]), "execution_env": os.environ.get("AWS_EXECUTION_ENV")}


def large(event: dict[str, Any], context: Any) -> str:
    print("x" * int(event["log_bytes"]))
    return "y" * int(event["result_bytes"])

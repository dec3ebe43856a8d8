"""Loading a handler (``module.attr``) as Lambda's Python runtime does, with the same error names and messages."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from local_lambda import errors

Handler = Callable[[Any, Any], Any]


class RuntimeFault(Exception):
    """A failure reported with a ready-made error object: a ``Runtime.*`` fault, or an exception at init."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def load_handler(handler: str) -> Handler:
    """Import the handler's module and return its attribute; raise RuntimeFault as Lambda would report the failure."""
    module_name, separator, attribute = handler.rpartition(".")
    if not separator or not module_name:
        raise RuntimeFault(
            errors.error_object(
                errors.MALFORMED_HANDLER_NAME,
                f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
            )
        )
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise RuntimeFault(
            errors.error_object(
                errors.BUILT_IN_MODULE_CONFLICT, f"Cannot use built-in module {module_name} as a handler module"
            )
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise RuntimeFault(
            errors.error_object(errors.IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {exc}")
        ) from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise RuntimeFault(
            errors.error_object(
                errors.USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {exc}", stack_trace=trace
            )
        ) from exc
    except Exception as exc:
        raise RuntimeFault(exception_error_object(exc)) from exc
    try:
        loaded: Handler = getattr(module, attribute)
    except AttributeError as exc:
        raise RuntimeFault(
            errors.error_object(errors.HANDLER_NOT_FOUND, f"Handler '{attribute}' missing on module '{module_name}'")
        ) from exc
    return loaded


def exception_error_object(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    """The error object for an exception raised by function code: its class name, message and stack trace."""
    return errors.error_object(type(exc).__name__, str(exc), request_id, user_stack_trace(exc.__traceback__))


def user_stack_trace(tb: TracebackType | None) -> list[str]:
    """The traceback's frames from the first one outside this package on, formatted as ``traceback.format_list``."""
    frames = traceback.extract_tb(tb)
    package_dir = __file__.rsplit("/", 1)[0] + "/"
    first_user_frame = next((i for i, frame in enumerate(frames) if not frame.filename.startswith(package_dir)), 0)
    return traceback.format_list(frames[first_user_frame:])


def error_log_text(error: dict[str, Any]) -> str:
    """How the runtime logs an error it reports: ``[ERROR] Type: message`` and the traceback."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    stack_trace = error.get("stackTrace")
    if stack_trace:
        lines.append("Traceback (most recent call last):")
        lines.extend(line for element in stack_trace for line in element.splitlines())
    return "\n".join(lines) + "\n"

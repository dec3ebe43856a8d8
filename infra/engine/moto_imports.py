"""moto's Step Functions interpreter imports `moto.batch.utils` for its Batch task's job states, and that import
first runs the `moto.batch` package, which loads moto's whole Batch and EC2 models: 0.7 s of the start of every
process that runs the engine (`make run`, `make demo`, each tool, each test process), for a task no saga runs.

`defer_moto_batch` enters `moto.batch` without running its package code: its submodules import as before, and
the first read of what the package itself offers (its backends, should a request for Batch ever come) loads it
then.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

DEFERRED = "moto.batch"


def defer_moto_batch() -> None:
    if DEFERRED in sys.modules:
        return
    spec = importlib.util.find_spec(DEFERRED)
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType(DEFERRED)
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = DEFERRED
    package.__getattr__ = _from_the_package_code  # type: ignore[method-assign]
    sys.modules[DEFERRED] = package
    vars(importlib.import_module("moto"))["batch"] = package  # as an import of the package binds it


def _from_the_package_code(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    models = importlib.import_module(f"{DEFERRED}.models")
    return getattr(models, name)

"""The plux plugin LocalStack finds in `localstack.lambda.runtime_executor` (LAMBDA_RUNTIME_EXECUTOR=local-lambda)."""

from __future__ import annotations

from typing import Any, cast

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class LocalLambdaExecutorPlugin(RuntimeExecutorPlugin):  # type: ignore[misc]  # localstack is untyped here
    name = "local-lambda"

    def load(self, *args: Any, **kwargs: Any) -> type:
        from local_lambda_executor.executor import LocalLambdaRuntimeExecutor

        return cast(type, LocalLambdaRuntimeExecutor)

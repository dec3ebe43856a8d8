"""A purchase and a return through the API that `make localstack-deploy` made; prints their final statuses.

Reads out/localstack-stack.json (written by the deploy). Exits non-zero unless both sagas end COMPLETED.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from infra.deploy.localstack.deploy import PACKAGE_DIR, STACK_FILE_NAME

FINAL_STATUSES = {"COMPLETED", "COMPENSATED", "CANCELLED", "REJECTED", "FAILED", "RESOLVED"}
TIMEOUT_SECONDS = 180.0


def call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310  # nosec B310
        return dict(json.loads(answer.read()))


def final_view(api_url: str, saga_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        view = call("GET", f"{api_url}/sagas/{saga_id}")
        if view["status"] in FINAL_STATUSES:
            return view
        time.sleep(1)
    raise TimeoutError(f"saga {saga_id} not final after {TIMEOUT_SECONDS:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack-file", type=Path, default=PACKAGE_DIR / STACK_FILE_NAME, help="what the deploy wrote")
    stack_file = parser.parse_args(argv).stack_file
    if not stack_file.is_file():
        print(f"{stack_file} not found: run `make localstack-deploy` first", file=sys.stderr)
        return 2
    api_url = json.loads(stack_file.read_text())["api_url"]
    purchase = {"customer_id": "smoke", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"}  # nosec B105 - a test token of the simulated provider
    bought = final_view(api_url, call("POST", f"{api_url}/purchases", purchase)["saga_id"])
    print(f"purchase {bought['saga_id']}: {bought['status']}")
    if bought["status"] != "COMPLETED":
        return 1
    giving_back = {
        "customer_id": "smoke",
        "order_id": bought["result"]["order_id"],
        "quantity": 1,
        "reason": "smoke test",
    }
    returned = final_view(api_url, call("POST", f"{api_url}/returns", giving_back)["saga_id"])
    print(f"return   {returned['saga_id']}: {returned['status']}")
    return 0 if returned["status"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())

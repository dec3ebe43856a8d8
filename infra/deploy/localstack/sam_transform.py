"""The SAM transform of a packaged template, as CloudFormation applies it on deploy, printed as JSON.

Run it with an interpreter that has `aws-sam-translator` (LocalStack's virtualenv does):
`.localstack/venv/bin/python -m infra.deploy.localstack.sam_transform out/sam.yaml [--bucket NAME]`. The code and
definitions are put at `s3://<bucket>/` locations first, as `sam package` puts them; no AWS account is asked
anything.

`make localstack-demo` deploys this output: LocalStack 2026.3.0's CloudFormation resolves every Ref and GetAtt
before it applies the template's global SAM transform, so a Ref to what the transform generates
(`ReserveStockFunction.Alias`, `PurchaseSagaStateMachineAliaslive`) fails there with "Unresolved resource
dependencies". The same samtranslator, run first, leaves it a plain CloudFormation template.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

DEFAULT_BUCKET = "packaged"
CODE_KEY = "deployment.zip"


class _NoManagedPolicies:
    """The template names its managed policies by ARN: there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(path: Path, bucket: str = DEFAULT_BUCKET) -> dict[str, Any]:
    template = yaml_parse(path.read_text())
    code = f"s3://{bucket}/{CODE_KEY}"
    template["Globals"]["Function"]["CodeUri"] = code
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if "CodeUri" in properties:
            properties["CodeUri"] = code
        if "DefinitionUri" in properties:
            properties["DefinitionUri"] = f"s3://{bucket}/{properties['DefinitionUri']}"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return dict(transform(template, {}, _NoManagedPolicies()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", type=Path, help="make package's out/sam.yaml")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="where the code and the definitions are uploaded")
    args = parser.parse_args(argv)
    json.dump(transformed(args.template, args.bucket), sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()

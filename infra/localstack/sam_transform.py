"""The SAM transform of a packaged template, as CloudFormation applies it on deploy, printed as JSON.

Run it with an interpreter that has `aws-sam-translator` (LocalStack's virtualenv does):
`.localstack/venv/bin/python -m infra.localstack.sam_transform out/sam.yaml`. The code and definitions are put
at `s3://` locations first, as `sam deploy` puts them; no AWS account is asked anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

BUCKET = "s3://packaged"


class _NoManagedPolicies:
    """The template names its managed policies by ARN: there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(path: Path) -> dict[str, Any]:
    template = yaml_parse(path.read_text())
    template["Globals"]["Function"]["CodeUri"] = f"{BUCKET}/deployment.zip"
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if "CodeUri" in properties:
            properties["CodeUri"] = f"{BUCKET}/deployment.zip"
        if "DefinitionUri" in properties:
            properties["DefinitionUri"] = f"{BUCKET}/{properties['DefinitionUri']}"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return dict(transform(template, {}, _NoManagedPolicies()))


if __name__ == "__main__":
    json.dump(transformed(Path(sys.argv[1])), sys.stdout, indent=1, default=str)

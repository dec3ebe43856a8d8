"""`make package`: out/sam.yaml and out/deployment.zip, ready for `sam deploy`, whatever Python runs this.

The dependencies are wheels for the runtime and architecture that template.yaml's Globals name (pip's
`--platform`/`--python-version` with `--only-binary=:all:`), put in `vendor/`, which chalice copies to the zip's
root; chalice itself gets no requirements, since it would build them for the Python it runs on. Then chalice
merges template.yaml into the API it generates, and the result is finished here:

- the API function takes the runtime of the Globals, like every other function (chalice writes its own Python's);
- API Gateway invokes the API function's alias `live`, as the state machines invoke the steps' aliases;
- each state machine's definition digest, in its `DefinitionDigest` substitution and its canary alarms, is the
  digest of the definition shipped (infra/engine/definition_digest.py);
- YAML anchors are written out (CloudFormation itself rejects them).
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404
import sys
from pathlib import Path
from typing import Any

import yaml

from infra.engine.definition_digest import stamp
from infra.engine.local_engine import load_template

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
BUILD = OUT / "build"
API_FUNCTION = "APIHandler"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def lambda_python(template: dict[str, Any]) -> tuple[str, str]:
    """(python version, pip platform) of the template's functions: ("3.12", "manylinux2014_x86_64")."""
    defaults = template["Globals"]["Function"]
    version = str(defaults["Runtime"]).removeprefix("python")
    return version, PLATFORMS[defaults.get("Architectures", ["x86_64"])[0]]


def main() -> int:
    template = load_template()
    version, platform = lambda_python(template)
    shutil.rmtree(OUT, ignore_errors=True)
    (BUILD / "vendor").mkdir(parents=True)
    for name in ("app.py", "chalicelib", ".chalice"):
        _copy(ROOT / name, BUILD / name)
    for name in ("functions", "statemachines"):
        _copy(ROOT / name, BUILD / "vendor" / name)
    _copy(ROOT / "statemachines", OUT / "statemachines")
    (BUILD / "requirements.txt").write_text("")
    _run(
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--platform", platform, "--python-version", version, "--implementation", "cp", "--only-binary=:all:",
        "--target", str(BUILD / "vendor"), "-r", str(ROOT / "requirements.txt"),
    )  # fmt: skip
    chalice = Path(sys.executable).parent / "chalice"
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    _run(str(chalice), "package", "--merge-template", str(ROOT / "template.yaml"), str(OUT), cwd=BUILD, env=env)
    shutil.rmtree(BUILD)
    packaged = OUT / "sam.yaml"
    finished = finish(yaml.safe_load(packaged.read_text()), OUT)
    packaged.write_text(yaml.dump(finished, Dumper=_Dumper, sort_keys=False))
    print(f"out/sam.yaml, out/deployment.zip: python{version} on {platform}")
    return 0


def finish(template: dict[str, Any], out: Path) -> dict[str, Any]:
    """What chalice's output in `out` needs before it deploys as designed (see the module's docstring)."""
    stamp(template, out)
    resources = template["Resources"]
    resources[API_FUNCTION]["Properties"].pop("Runtime", None)
    for methods in resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"].values():
        for operation in methods.values():
            integration = operation.get("x-amazon-apigateway-integration", {})
            uri = integration.get("uri", {})
            if isinstance(uri, dict) and isinstance(uri.get("Fn::Sub"), str):
                text = uri["Fn::Sub"].replace(f"${{{API_FUNCTION}.Arn}}", "${FunctionAlias}")
                integration["uri"] = {"Fn::Sub": [text, {"FunctionAlias": {"Ref": f"{API_FUNCTION}.Alias"}}]}
    resources[f"{API_FUNCTION}InvokePermission"]["Properties"]["FunctionName"] = {"Ref": f"{API_FUNCTION}.Alias"}
    return template


def _copy(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__")
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore)
    else:
        shutil.copy2(source, target)


def _run(*command: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    subprocess.run(command, cwd=cwd, env=env, check=True)  # noqa: S603  # nosec B603


if __name__ == "__main__":
    sys.exit(main())

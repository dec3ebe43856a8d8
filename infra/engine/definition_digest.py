"""The identity of a state machine definition: a short digest of its ASL file, which every Task passes to its step
(`"definition": "${DefinitionDigest}"`) so that a fault is counted against the definition that ran, and the canary
alarm of a deploy watches the definition it ships (docs/design.md §7.3).

template.yaml holds the placeholder UNPACKAGED where the digest goes; `make package` writes the digest of each
shipped definition there (`stamp`), and the local engine substitutes it as it registers the state machines.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from chalicelib.observability.metric_names import DEFINITION_DIMENSION, DEFINITION_FAULTS

SUBSTITUTION = "DefinitionDigest"
UNPACKAGED = "unpackaged"
"""template.yaml's value of the digest, the substitution's and its canary alarms': what `make package` replaces."""
LENGTH = 12


def definition_digest(path: Path) -> str:
    """The first LENGTH hex digits of the SHA-256 of the ASL file, as written (its placeholders unfilled)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:LENGTH]


def stamp(template: dict[str, Any], root: Path) -> dict[str, Any]:
    """`template` with each state machine's digest (of its DefinitionUri under `root`) in its DefinitionDigest
    substitution and in the `Definition` dimension of the DefinitionFaults alarms its DeploymentPreference names."""
    resources = template["Resources"]
    for resource in resources.values():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Serverless::StateMachine" or SUBSTITUTION not in properties.get(
            "DefinitionSubstitutions", {}
        ):
            continue
        digest = definition_digest(root / properties["DefinitionUri"])
        properties["DefinitionSubstitutions"][SUBSTITUTION] = digest
        for alarm in properties.get("DeploymentPreference", {}).get("Alarms", []):
            alarm_properties = resources[alarm["Ref"]]["Properties"]
            if alarm_properties.get("MetricName") != DEFINITION_FAULTS:
                continue
            for dimension in alarm_properties["Dimensions"]:
                if dimension["Name"] == DEFINITION_DIMENSION:
                    dimension["Value"] = digest
    return template

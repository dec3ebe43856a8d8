"""How template.yaml names the functions its state machines invoke: `!Ref <Function>.Alias`, the alias `live`
that AutoPublishAlias publishes (docs/design.md §7.3)."""

from __future__ import annotations

from typing import Any

ALIAS = ".Alias"
DEFINITION_DIGEST = "DefinitionDigest"
"""The one substitution that names no function: the definition's digest (infra/engine/definition_digest.py)."""


def invoked_function(value: Any) -> str:
    """The logical id of the function a DefinitionSubstitutions value names through its alias."""
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    assert str(value["Ref"]).endswith(ALIAS), value
    return str(value["Ref"]).removesuffix(ALIAS)


def function_substitutions(properties: dict[str, Any]) -> dict[str, Any]:
    """A state machine's DefinitionSubstitutions that name the functions it invokes."""
    return {k: v for k, v in properties["DefinitionSubstitutions"].items() if k != DEFINITION_DIGEST}

"""How template.yaml names the functions its state machines invoke: `!Ref <Function>.Alias`, the alias `live`
that AutoPublishAlias publishes (docs/design.md §7.3)."""

from __future__ import annotations

from typing import Any

ALIAS = ".Alias"


def invoked_function(value: Any) -> str:
    """The logical id of the function a DefinitionSubstitutions value names through its alias."""
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    assert str(value["Ref"]).endswith(ALIAS), value
    return str(value["Ref"]).removesuffix(ALIAS)

"""`make diagrams`: docs/<machine>.svg for every state machine, drawn from its ASL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chalicelib.presentation.diagram import render

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        name = path.name.removesuffix(".asl.json")
        definition = json.loads(path.read_text())
        target = docs / f"{name}.svg"
        target.write_text(render(definition, name.replace("_", " ").capitalize()))
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

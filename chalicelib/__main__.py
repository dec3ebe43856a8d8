"""`python -m chalicelib status|history|resolve|cancel SAGA_ID`, `list [filters]`, `stats`, `retry [filters]
[--dry-run]`, `operation OPERATION_ID` (see chalicelib/entrypoints/cli.py)."""

import sys

from chalicelib.entrypoints.cli import main

sys.exit(main())

"""`python -m chalicelib status|history SAGA_ID` (see chalicelib/entrypoints/cli.py)."""

import sys

from chalicelib.entrypoints.cli import main

sys.exit(main())

"""`python -m chalicelib status|history|resolve|cancel SAGA_ID` (see chalicelib/entrypoints/cli.py)."""

import sys

from chalicelib.entrypoints.cli import main

sys.exit(main())

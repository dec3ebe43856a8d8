"""`python -m chalicelib status|history SAGA_ID` (see chalicelib/cli.py)."""

import sys

from chalicelib.cli import main

sys.exit(main())

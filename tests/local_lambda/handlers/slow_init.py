"""A handler module whose init takes a while (as importing a large SDK does)."""

import os
import time

time.sleep(float(os.environ.get("INIT_SECONDS", "1")))


def handler(event: object, context: object) -> int:
    return os.getpid()

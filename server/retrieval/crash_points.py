"""Named points in the store's multi-step changes where tests kill the server, to prove that a crash at
any of them leaves a store that the next start repairs.

Test-only: set CROSSMODAL_TEST_CRASH_AT to a step name (see STEPS) and the server SIGKILLs itself on
reaching it. Nothing is read unless that variable is set.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

VARIABLE = "CROSSMODAL_TEST_CRASH_AT"
STEPS = (
    "create:collection_made",  # the Milvus collection exists, the catalogue does not name it yet
    "create:catalogued",  # the catalogue names it, no rows written yet
    "drop:uncatalogued",  # off the catalogue, the Milvus collection not yet dropped
    "drop:dropped",  # both gone
)


def crash_point(step: str) -> None:
    assert step in STEPS, step
    if os.environ.get(VARIABLE) == step:
        log.critical("%s=%s: killing the server", VARIABLE, step)
        os.kill(os.getpid(), signal.SIGKILL)

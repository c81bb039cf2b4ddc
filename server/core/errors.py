"""Domain errors of the engine, and the one table from each to a protocol-neutral status.

Protocols translate a status into their own code (gRPC's StatusCode of the same name, an HTTP status),
so what a caller is told for an error is decided here once.
"""

from __future__ import annotations

from enum import StrEnum


class CrossModalError(Exception):
    """Base of every error the engine reports to a caller."""


class InvalidInput(CrossModalError):
    """The request is malformed; the message names the item and the reason (INVALID_ARGUMENT)."""


class LimitExceeded(CrossModalError):
    """A configured limit was exceeded; the message names the item and the limit (RESOURCE_EXHAUSTED)."""


class ModelNotFound(CrossModalError):
    """Unknown model name or version (NOT_FOUND)."""


class ModelNotReady(CrossModalError):
    """The model exists but cannot serve now (UNAVAILABLE)."""


class ModelLoadError(CrossModalError):
    """A model version could not be loaded; the message says why."""


class Overloaded(CrossModalError):
    """A model's queue is full; the caller should retry later (RESOURCE_EXHAUSTED)."""


class Cancelled(CrossModalError):
    """The call was cancelled before its work ran (CANCELLED)."""


class NotAllowed(CrossModalError):
    """The request is valid but not in the server's current mode (FAILED_PRECONDITION)."""


class Unavailable(CrossModalError):
    """A service the server depends on (the vector store) does not answer (UNAVAILABLE)."""


class StartupError(Exception):
    """The server cannot start (a port is taken, a TLS file is unusable); the message names what and why.

    Not a CrossModalError: no call is answered with it; the command line prints it as one line and exits."""


class Status(StrEnum):
    """How a call ended, in the canonical names gRPC also uses."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


STATUS_OF: dict[type[CrossModalError], Status] = {
    InvalidInput: Status.INVALID_ARGUMENT,
    LimitExceeded: Status.RESOURCE_EXHAUSTED,
    ModelNotFound: Status.NOT_FOUND,
    ModelNotReady: Status.UNAVAILABLE,
    Overloaded: Status.RESOURCE_EXHAUSTED,
    Cancelled: Status.CANCELLED,
    NotAllowed: Status.FAILED_PRECONDITION,
    Unavailable: Status.UNAVAILABLE,
}


def status_of(error: BaseException) -> Status:
    """The status a caller gets for `error`: its kind's, else INTERNAL (a bug, or a kind not listed)."""
    for kind, status in STATUS_OF.items():
        if isinstance(error, kind):
            return status
    return Status.INTERNAL

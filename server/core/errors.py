"""Domain errors of the engine; the gRPC adapter maps each to one status code."""


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

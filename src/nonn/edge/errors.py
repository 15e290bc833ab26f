"""Errors of the edge runtime. It must not import nonn.errors: it ships to devices alone."""


class EdgeError(Exception):
    """A problem the user caused; the message is one line that names the fix."""


class TensorError(EdgeError):
    """A tensor or image on the wire is malformed; servers answer INVALID_ARGUMENT."""


class GatewayError(EdgeError):
    """The gateway answered a non-OK status; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.details = message

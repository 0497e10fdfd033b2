"""Errors: every failed call raises a StimloopError carrying the gRPC code and the server's message.

One subclass per gRPC status code, so that a script can catch exactly what it handles
(``except stimloop.NotFound``) or everything (``except stimloop.StimloopError``).
"""

from __future__ import annotations

import grpc


class StimloopError(Exception):
    """A call that failed. ``code`` is the grpc.StatusCode, ``message`` the server's text."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The code's name as the CLI prints it, e.g. ``NOT_FOUND``."""
        return self.code.name

    def __str__(self) -> str:
        return f"{self.message} [{self.code.name}]"


def _subclass(name: str, code: grpc.StatusCode) -> type[StimloopError]:
    return type(name, (StimloopError,), {"code": code, "__doc__": f"gRPC status {code.name}."})


Cancelled = _subclass("Cancelled", grpc.StatusCode.CANCELLED)
Unknown = _subclass("Unknown", grpc.StatusCode.UNKNOWN)
InvalidArgument = _subclass("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT)
DeadlineExceeded = _subclass("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED)
NotFound = _subclass("NotFound", grpc.StatusCode.NOT_FOUND)
AlreadyExists = _subclass("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS)
PermissionDenied = _subclass("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED)
ResourceExhausted = _subclass("ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED)
FailedPrecondition = _subclass("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION)
Aborted = _subclass("Aborted", grpc.StatusCode.ABORTED)
OutOfRange = _subclass("OutOfRange", grpc.StatusCode.OUT_OF_RANGE)
Unimplemented = _subclass("Unimplemented", grpc.StatusCode.UNIMPLEMENTED)
Internal = _subclass("Internal", grpc.StatusCode.INTERNAL)
Unavailable = _subclass("Unavailable", grpc.StatusCode.UNAVAILABLE)
DataLoss = _subclass("DataLoss", grpc.StatusCode.DATA_LOSS)
Unauthenticated = _subclass("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED)

ERROR_CLASSES: dict[grpc.StatusCode, type[StimloopError]] = {
    cls.code: cls
    for cls in [Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated]
}


def from_rpc_error(error: grpc.RpcError) -> StimloopError:
    """The StimloopError subclass for a failed call's code, with the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else None
    cls = ERROR_CLASSES.get(code, StimloopError)
    return cls(details or str(code.name), code)

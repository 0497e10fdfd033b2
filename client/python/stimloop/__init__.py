"""stimloop: the Python client of stimloop-server (compact V4 models over gRPC).

Images go in and come out as uint8 numpy arrays of shape (H, W, 3) (RGB); responses and gradients
come back as float32 arrays. Errors raise StimloopError subclasses carrying the gRPC code and the
server's message. The generated protocol modules are stimloop.v1.stimloop_pb2 and
stimloop.v1.sessions_pb2 (with their *_pb2_grpc stubs), for anything this API leaves out.

    import stimloop
    with stimloop.Client("127.0.0.1:50051") as client:
        print([m.id for m in client.models()])
"""

from ._channel import TLS
from ._client import Client, SynthesisStream
from ._errors import (ERROR_CLASSES, Aborted, AlreadyExists, Cancelled, DataLoss,
                      DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound,
                      OutOfRange, PermissionDenied, ResourceExhausted, StimloopError,
                      Unauthenticated, Unavailable, Unimplemented, Unknown)
from ._records import record_text
from ._session_types import (Block, BlockStimulus, Calibration, ChannelCalibration,
                             ExportResult, ReportResult, SessionInfo)
from ._sessions import block_strategy
from ._spec import synthesis_spec
from ._types import Gradient, ModelInfo, Stimulus, SynthesisEvent, SynthesisResult

__version__ = "0.1.0"

__all__ = [
    "Aborted", "AlreadyExists", "Block", "BlockStimulus", "Calibration", "Cancelled",
    "ChannelCalibration", "Client", "DataLoss", "DeadlineExceeded", "ERROR_CLASSES",
    "ExportResult", "FailedPrecondition", "Gradient", "Internal", "InvalidArgument", "ModelInfo",
    "NotFound", "OutOfRange", "PermissionDenied", "ReportResult", "ResourceExhausted",
    "SessionInfo", "Stimulus", "StimloopError", "SynthesisEvent", "SynthesisResult",
    "SynthesisStream", "TLS", "Unauthenticated", "Unavailable", "Unimplemented", "Unknown",
    "block_strategy", "record_text", "synthesis_spec",
]

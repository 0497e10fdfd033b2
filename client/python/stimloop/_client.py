"""Client: the calls of stimloop.v1.Stimloop and the health service (sessions in _sessions.py)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, Sequence

import grpc
import numpy as np

from ._channel import DEFAULT, TLS, Pem, make_channel, read_token
from ._errors import StimloopError, Unavailable, from_rpc_error
from ._images import ImagesLike, encoding_value, to_images
from ._sessions import SessionsMixin
from ._spec import priority_value, synthesis_spec
from ._types import Gradient, ModelInfo, SynthesisEvent, SynthesisResult
from ._health.grpc.health.v1 import health_pb2
from .v1 import sessions_pb2_grpc
from .v1 import stimloop_pb2 as pb
from .v1 import stimloop_pb2_grpc

class SynthesisStream:
    """The events of one Synthesize call, in order. Iterate it; `cancel()` (from any thread)
    stops the server's job within a step, and iterating then raises Cancelled. Leaving a `with`
    block cancels a stream that has not ended."""

    def __init__(self, call):
        self._call = call
        self.done = False

    def __iter__(self) -> Iterator[SynthesisEvent]:
        return self

    def __next__(self) -> SynthesisEvent:
        try:
            event = next(self._call)
        except StopIteration:
            self.done = True
            raise
        except grpc.RpcError as e:
            self.done = True
            raise from_rpc_error(e) from None
        return SynthesisEvent.from_proto(event)

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> "SynthesisStream":
        return self

    def __exit__(self, *exc) -> None:
        if not self.done:
            self.cancel()


class Client(SessionsMixin):
    """A connection to a stimloop-server.

    address: HOST:PORT. token / token_file: the bearer token the server requires
    (--auth-token-file). tls: None (plaintext), True (system roots), a CA's PEM (path or bytes)
    or a TLS object (mutual TLS, server name). timeout: the default gRPC deadline of every call,
    in seconds (None: none); each call takes its own `timeout` too.

    Every call raises a StimloopError subclass (NotFound, InvalidArgument, ...) carrying the gRPC
    code and the server's message. `close()` (or leaving a `with` block) cancels calls in flight.
    """

    def __init__(self, address: str, *, token: str | None = None,
                 token_file: str | os.PathLike | None = None,
                 tls: TLS | bool | Pem | None = None, timeout: float | None = None):
        if token is not None and token_file is not None:
            raise ValueError("token and token_file: give one")
        self.address = address
        self.timeout = timeout
        self._token = read_token(token_file) if token_file is not None else token
        self._channel = make_channel(address, tls)
        self.stub = stimloop_pb2_grpc.StimloopStub(self._channel)
        self.sessions_stub = sessions_pb2_grpc.SessionsStub(self._channel)
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    # ---- plumbing ----------------------------------------------------------------------------

    def _options(self, timeout: Any, request_id: str | None) -> dict[str, Any]:
        metadata = []
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        if request_id:
            metadata.append(("x-request-id", request_id))
        return {"timeout": self.timeout if timeout is DEFAULT else timeout, "metadata": metadata}

    def _call(self, method: Callable, request: Any, timeout: Any = DEFAULT,
              request_id: str | None = None) -> Any:
        try:
            return method(request, **self._options(timeout, request_id))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- health ------------------------------------------------------------------------------

    def health(self, timeout: float | None = 5.0) -> str:
        """The standard health service's status: 'SERVING' once every model is loaded."""
        response = self._call(self._health_check, health_pb2.HealthCheckRequest(), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Polls the health service until SERVING; raises Unavailable after `timeout` seconds."""
        end = time.monotonic() + timeout
        last: StimloopError = Unavailable("no answer from the server's health service")
        while time.monotonic() < end:
            try:
                if self.health(timeout=1.0) == "SERVING":
                    return
                last = Unavailable("the server is not SERVING yet")
            except StimloopError as e:
                last = e
            time.sleep(0.1)
        raise type(last)(f"waiting for SERVING: {last.message}", last.code)

    # ---- models ------------------------------------------------------------------------------

    def models(self, *, timeout: Any = DEFAULT) -> list[ModelInfo]:
        """Every model the server holds, in its stable order (ListModels)."""
        response = self._call(self.stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto(m) for m in response.models]

    def model(self, model_id: str, *, timeout: Any = DEFAULT) -> ModelInfo:
        """One model's description (GetModel); NotFound for an unknown id."""
        return ModelInfo.from_proto(
            self._call(self.stub.GetModel, pb.GetModelRequest(model_id=model_id), timeout))

    # ---- responses and gradients -------------------------------------------------------------

    def predict(self, model: str | Sequence[str], images: ImagesLike, *,
                priority: Any = None, deadline_ms: float = 0.0, timeout: Any = DEFAULT,
                request_id: str | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Responses to images: uint8 arrays (N, H, W, 3) or (H, W, 3), or PNG files' bytes.

        One model id: float32 array (N, outputs), or (outputs,) for a single image. A list of
        ids: {id: that array}, in the request's order.
        """
        ids = [model] if isinstance(model, str) else list(model)
        messages, single = to_images(images)
        request = pb.PredictRequest(model_ids=ids, images=messages, deadline_ms=deadline_ms,
                                    priority=priority_value(priority) if priority else 0)
        response = self._call(self.stub.Predict, request, timeout, request_id)
        arrays = {}
        for r in response.results:
            a = np.array(r.responses, dtype=np.float32).reshape(len(messages), r.num_outputs)
            arrays[r.model_id] = a[0] if single else a
        return arrays[ids[0]] if isinstance(model, str) else arrays

    def input_gradient(self, model: str, images: ImagesLike, *, output_index: int = 0,
                       output_seed: Sequence[float] | None = None, priority: Any = None,
                       deadline_ms: float = 0.0, timeout: Any = DEFAULT,
                       request_id: str | None = None) -> Gradient:
        """d(output `output_index`, or sum_k output_seed[k] * output k) / d(pixel level 0..255).

        Gradient.gradients is float32 (N, H, W, 3) and Gradient.responses (N, outputs); both
        without the N axis for a single image.
        """
        messages, single = to_images(images)
        request = pb.InputGradientRequest(
            model_id=model, images=messages, output_index=output_index, deadline_ms=deadline_ms,
            priority=priority_value(priority) if priority else 0)
        if output_seed is not None:
            request.output_seed.extend(np.asarray(output_seed, dtype=np.float32).ravel().tolist())
        r = self._call(self.stub.InputGradient, request, timeout, request_id)
        n = len(messages)
        shapes = [(m.height, m.width) for m in messages]
        if any(m.encoding != pb.RAW_RGB8 for m in messages):
            shapes = [self.model(model, timeout=timeout).input_shape[:2]] * n
        responses = np.array(r.responses, dtype=np.float32).reshape(n, r.num_outputs)
        gradients = np.array(r.gradients, dtype=np.float32).reshape(n, *shapes[0], 3)
        if single:
            responses, gradients = responses[0], gradients[0]
        return Gradient(responses, gradients, r.request_id)

    # ---- synthesis ---------------------------------------------------------------------------

    def synthesize_stream(self, model: str, objective: Any = "max", *, priority: Any = None,
                          deadline_ms: float = 0.0, progress_every: int = 0,
                          snapshot_every: int = 0, encoding: str = "raw",
                          timeout: Any = DEFAULT, request_id: str | None = None,
                          **spec: Any) -> SynthesisStream:
        """Starts a synthesis and returns its events as an iterator (ACCEPTED, PROGRESS,
        SNAPSHOT, one STIMULUS per stimulus, DONE). `spec`: any SynthesisSpec field by name
        (steps, seed, count, method, output_index, ...; see synthesis_spec). encoding: 'raw'
        gives the stimuli as uint8 arrays, 'png' as the server's PNG bytes."""
        request = pb.SynthesizeRequest(
            model_id=model, spec=synthesis_spec(objective, **spec), deadline_ms=deadline_ms,
            priority=priority_value(priority) if priority else 0, progress_every=progress_every,
            snapshot_every=snapshot_every, result_encoding=encoding_value(encoding))
        call = self.stub.Synthesize(request, **self._options(timeout, request_id))
        return SynthesisStream(call)

    def synthesize(self, model: str, objective: Any = "max", *,
                   on_event: Callable[[SynthesisEvent], None] | None = None,
                   **options: Any) -> SynthesisResult:
        """A whole synthesis: waits for DONE and returns every stimulus with its record.
        Takes synthesize_stream's arguments; on_event sees each event as it arrives."""
        stimuli, done = [], None
        with self.synthesize_stream(model, objective, **options) as stream:
            for event in stream:
                if on_event is not None:
                    on_event(event)
                if event.stimulus is not None:
                    stimuli.append(event.stimulus)
                if event.kind == "DONE":
                    done = event
        if done is None:
            raise StimloopError("the server's Synthesize stream ended without DONE")
        return SynthesisResult(stimuli, done.stop_reason, done.request_id, done.queue_ms,
                               done.wall_ms)

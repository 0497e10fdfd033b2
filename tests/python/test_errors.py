"""Every gRPC status code surfaces as a StimloopError carrying the code and the server's message."""

import grpc
import numpy as np
import pytest

import stimloop
from server_process import ServerProcess
from stimloop._errors import from_rpc_error


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK],
                         ids=lambda c: c.name)
def test_each_code_maps_to_its_exception(code):
    error = from_rpc_error(FakeRpcError(code, f"message for {code.name}"))
    assert isinstance(error, stimloop.StimloopError)
    assert type(error) is stimloop.ERROR_CLASSES[code] and type(error).__name__ != "StimloopError"
    assert error.code == code and error.code_name == code.name
    assert error.message == f"message for {code.name}"
    assert str(error) == f"message for {code.name} [{code.name}]"


def test_not_found_names_the_model(client):
    with pytest.raises(stimloop.NotFound, match="nope") as caught:
        client.predict("nope", np.zeros((112, 112, 3), np.uint8))
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_invalid_argument_names_the_field(client):
    with pytest.raises(stimloop.InvalidArgument, match=r"--steps -1"):
        client.synthesize("demo", "max", steps=-1)
    with pytest.raises(stimloop.InvalidArgument, match=r"images\[0\]"):
        client.predict("demo", np.zeros((64, 64, 3), np.uint8))


def test_out_of_range_output_index(client):
    with pytest.raises(stimloop.OutOfRange, match="output_index"):
        client.input_gradient("demo", np.zeros((112, 112, 3), np.uint8), output_index=5)


def test_over_the_image_limit(client):
    with pytest.raises(stimloop.InvalidArgument, match="images: 65 images; at most 64"):
        client.input_gradient("demo", np.zeros((65, 112, 112, 3), np.uint8))


def test_resource_exhausted_when_the_queue_is_full(bins, tmp_path):
    server = ServerProcess(bins, tmp_path, "--data-dir", str(tmp_path / "data"),
                           "--max-queue", "1")
    try:
        with stimloop.Client(server.address, timeout=60) as c:
            c.wait_until_serving()
            # A long campaign job holds the campaign queue's one place while it runs.
            with c.synthesize_stream("demo", "max", steps=1_000_000, priority="campaign") as busy:
                assert next(busy).kind == "ACCEPTED"
                with pytest.raises(stimloop.ResourceExhausted, match="queue") as caught:
                    c.synthesize("demo", "max", steps=5, priority="campaign")
                assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                # Other priorities still run.
                assert c.synthesize("demo", "max", steps=2, priority="rig").stop_reason
    finally:
        server.stop()


def test_unavailable_without_a_server():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with stimloop.Client(f"127.0.0.1:{port}", timeout=5) as nowhere:
        with pytest.raises(stimloop.Unavailable) as caught:
            nowhere.models()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_client_side_errors_name_the_argument():
    with pytest.raises(ValueError, match="address"):
        stimloop.Client("")
    with pytest.raises(ValueError, match="token and token_file"):
        stimloop.Client("127.0.0.1:1", token="x" * 20, token_file="/nonexistent")
    with pytest.raises(ValueError, match="token_file: cannot read"):
        stimloop.Client("127.0.0.1:1", token_file="/nonexistent/tokens")

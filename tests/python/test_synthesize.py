"""Synthesize: the event stream, the blocking form, deadlines and cancellation."""

import threading

import numpy as np
import pytest

import stimloop


def test_stream_events_come_in_order(client):
    with client.synthesize_stream("demo", "max", steps=20, seed=1, count=2, progress_every=5,
                                  snapshot_every=10) as stream:
        events = list(stream)
    kinds = [e.kind for e in events]
    assert kinds[0] == "ACCEPTED" and kinds[-1] == "DONE"
    assert kinds.count("STIMULUS") == 2 and "PROGRESS" in kinds and "SNAPSHOT" in kinds
    first_stimulus = kinds.index("STIMULUS")
    assert all(k == "STIMULUS" for k in kinds[first_stimulus:-1])
    steps = [e.steps_done for e in events if e.kind in ("PROGRESS", "SNAPSHOT")]
    assert steps == sorted(steps) and all(e.steps == 20 for e in events[1:-1] if e.steps)
    snapshot = next(e for e in events if e.kind == "SNAPSHOT")
    assert len(snapshot.snapshot) == 2 and snapshot.snapshot[0].shape == (112, 112, 3)
    assert snapshot.best_response.shape == (2,)
    assert len({e.request_id for e in events}) == 1
    stimuli = [e.stimulus for e in events if e.stimulus is not None]
    assert [s.index for s in stimuli] == [0, 1] and [s.seed for s in stimuli] == [1, 2]
    assert events[-1].stop_reason == "COMPLETED" and events[-1].wall_ms > 0


def test_blocking_synthesis_returns_stimuli_and_records(client):
    seen = []
    result = client.synthesize("demo_population", "population", targets=[1],
                               population_mode="one-hot", steps=10, step_size=4, seed=11,
                               on_event=seen.append)
    assert result.stop_reason == "COMPLETED" and len(result.stimuli) == 1
    record = result.records[0]
    assert record["request"]["objective"] == "population" and record["request"]["targets"] == [1]
    assert record["request"]["method"] == "adam" and record["steps_done"] == 10
    stimulus = result.stimuli[0]
    assert stimulus.outputs.shape == (4,) and int(np.argmax(stimulus.outputs)) == 1
    assert [e.kind for e in seen][0] == "ACCEPTED" and seen[-1].kind == "DONE"


def test_adversarial_from_an_array(client):
    from pictures import noise
    start = noise(9)
    result = client.synthesize("demo", "adversarial", init=start, epsilon=4, direction="down",
                               steps=6)
    moved = result.images[0].astype(int) - start.astype(int)
    assert np.abs(moved).max() <= 4
    assert result.records[0]["request"]["method"] == "pgd"


def test_deadline_ms_returns_the_best_stimulus_in_time(client):
    result = client.synthesize("demo", "max", steps=1_000_000, deadline_ms=300, priority="rig")
    assert result.stop_reason == "DEADLINE"
    assert 0 < result.records[0]["steps_done"] < 1_000_000 and result.images.shape[0] == 1


def test_deadline_ms_and_a_grpc_timeout_together(client):
    # The earlier of the two wins: deadline_ms, well inside the gRPC deadline.
    result = client.synthesize("demo", "max", steps=1_000_000, deadline_ms=300, timeout=10.0)
    assert result.stop_reason == "DEADLINE" and len(result.stimuli) == 1


def test_grpc_timeout_raises_deadline_exceeded(client):
    with pytest.raises(stimloop.DeadlineExceeded) as caught:
        client.predict("demo", np.zeros((256, 112, 112, 3), dtype=np.uint8), timeout=1e-4)
    assert caught.value.code.name == "DEADLINE_EXCEEDED" and caught.value.message


def test_cancelling_a_stream_stops_it(client):
    stream = client.synthesize_stream("demo", "max", steps=1_000_000, progress_every=1)
    assert next(stream).kind == "ACCEPTED"
    assert next(stream).kind == "PROGRESS"
    stream.cancel()
    with pytest.raises(stimloop.Cancelled) as caught:
        for _ in stream:
            pass
    assert caught.value.code.name == "CANCELLED"
    # The server is free again: a rig request goes through at once.
    assert client.predict("demo", np.zeros((112, 112, 3), np.uint8), timeout=30).shape == (1,)


def test_closing_the_client_cancels_a_blocking_call(server):
    other = stimloop.Client(server.address)
    closer = threading.Thread(target=other.close)

    def on_event(event):
        if event.kind == "ACCEPTED":  # the call is under way: close from another thread
            closer.start()

    with pytest.raises(stimloop.Cancelled):
        other.synthesize("demo", "max", steps=1_000_000, on_event=on_event)
    closer.join()


def test_leaving_a_with_block_cancels_the_stream(client):
    with client.synthesize_stream("demo", "max", steps=1_000_000) as stream:
        assert next(stream).kind == "ACCEPTED"
    with pytest.raises(stimloop.Cancelled):
        next(stream)


def test_unknown_spec_option_names_it(client):
    with pytest.raises(TypeError, match="'stepz'"):
        client.synthesize("demo", "max", stepz=3)
    with pytest.raises(ValueError, match="objective: 'maximum'"):
        client.synthesize("demo", "maximum")

"""Every call of stimloop.v1.Sessions through the Python client, on the demo pool."""

import hashlib

import numpy as np
import pytest

import stimloop


def virtual_responses(client, images):
    """Non-negative 'spike rates' of two channels: outputs 0 and 1 of demo_population."""
    return np.abs(client.predict("demo_population", images)[:, :2]).astype(np.float64) + 0.1


def test_a_whole_session(client):
    info = client.open_session("py1", channels=["a", ("b", "second channel")],
                               base_model="demo_population", pool="demo", rig="pytest",
                               min_stimuli=3, notes="python client test")
    assert info.state == "OPEN" and info.channels == [("a", ""), ("b", "second channel")]
    assert info.pool_images == 40 and info.calibration.version == 0
    # OpenSession is idempotent for the same request.
    assert client.open_session("py1", channels=["a", ("b", "second channel")],
                               base_model="demo_population", pool="demo", rig="pytest",
                               min_stimuli=3, notes="python client test").session_id == "py1"

    block = client.next_block("py1", 6, "pool", block_id="b0")
    assert block.block_index == 0 and not block.replayed and len(block.stimuli) == 6
    assert block.images.shape == (6, 112, 112, 3) and block.images.dtype == np.uint8
    assert all(s.origin == "POOL_IMAGE" and s.pool_image for s in block.stimuli)
    assert block.predicted.shape == (6, 0) and block.uncalibrated_channels == ["a", "b"]
    again = client.next_block("py1", 6, "pool", block_id="b0")
    assert again.replayed and again.stimulus_ids == block.stimulus_ids

    responses = virtual_responses(client, block.images)
    report = client.report_responses("py1", block.stimulus_ids, responses)
    assert (report.stored, report.duplicates, report.total_trials) == (6, 0, 6)
    assert report.calibration.version >= 1
    assert all(ch.calibrated for ch in report.calibration.channels)
    assert np.isfinite(report.calibration.cv_r).all()
    retry = client.report_responses("py1", block.stimulus_ids, responses)
    assert (retry.stored, retry.duplicates) == (0, 6)
    second = client.report_responses("py1", block.stimulus_ids[:2], responses[:2] + 1,
                                      repeat_index=1, aborted=[False, True])
    assert second.stored == 2 and second.total_trials == 8

    synthesized = client.next_block(
        "py1", 2, stimloop.block_strategy("synthesize", synthesis={"steps": 5}), encoding="png")
    assert [s.origin for s in synthesized.stimuli] == ["SYNTHESIZED"] * 2
    assert {s.target_channel for s in synthesized.stimuli} == {"a", "b"}
    for s in synthesized.stimuli:
        assert s.png is not None and s.image is None
        assert hashlib.sha256(s.png).hexdigest() == s.image_sha256
        assert s.record["steps_done"] == 5 and s.predicted.shape == (2,)
        assert not s.prepared  # nothing was prepared before the first SYNTHESIZE block
    assert synthesized.prepared_stimuli == 0

    # The same request again: the server prepared it while the first was "shown".
    again = client.next_block(
        "py1", 2, stimloop.block_strategy("synthesize", synthesis={"steps": 5}), encoding="png")
    assert again.prepared_stimuli == 2 and all(s.prepared for s in again.stimuli)
    assert all(s.record["steps_done"] == 5 for s in again.stimuli)

    mixed = client.next_block("py1", 3, stimloop.block_strategy(mix={"pool": 2, "synthesize": 1},
                                                                synthesis={"steps": 3}))
    assert sorted(s.origin for s in mixed.stimuli) == ["POOL_IMAGE", "POOL_IMAGE", "SYNTHESIZED"]

    # A calibrated channel is a model like any other.
    channel_model = report.calibration.channels[0].model_id
    assert channel_model == "py1/a"
    assert client.predict(channel_model, block.images).shape == (6, 1)
    assert client.predict("py1", block.images).shape == (6, 2)

    got = client.get_session("py1")
    assert got.blocks == 4 and got.trials == 8 and got.rig == "pytest"
    assert got.calibration.channels[0].agreement_with_previous <= 1.0
    assert "py1" in [s.session_id for s in client.list_sessions()]
    export = client.export_session("py1")
    assert "session.json" in export.files and export.directory
    closed = client.close_session("py1")
    assert closed.state == "CLOSED"
    assert client.close_session("py1").state == "CLOSED"
    with pytest.raises(stimloop.StimloopError) as caught:
        client.next_block("py1", 1)
    assert caught.value.code.name == "FAILED_PRECONDITION"


def test_session_errors_carry_code_and_message(client):
    with pytest.raises(stimloop.NotFound, match="pool"):
        client.open_session("py2", channels=["a"], base_model="demo", pool="no_such_pool")
    client.open_session("py3", channels=["a"], base_model="demo", pool="demo")
    with pytest.raises(stimloop.FailedPrecondition):
        client.open_session("py3", channels=["a", "b"], base_model="demo", pool="demo")
    with pytest.raises(stimloop.NotFound):
        client.get_session("never_opened")
    with pytest.raises(stimloop.InvalidArgument, match=r"trials\[0\]\.stimulus_id"):
        client.report_responses("py3", ["zz"], [[1.0]])
    with pytest.raises(ValueError, match="responses: shape"):
        client.report_responses("py3", ["a", "b"], [1.0, 2.0])
    with pytest.raises(stimloop.InvalidArgument, match=r"calibration\.ridge_smoothing"):
        client.open_session("py4", channels=["a"], base_model="demo", pool="demo",
                            ridge_smoothing=9.0)
    with pytest.raises(stimloop.InvalidArgument, match=r"calibration\.prepared_min_agreement"):
        client.open_session("py4", channels=["a"], base_model="demo", pool="demo",
                            prepared_min_agreement=2.0)
    smooth = client.open_session("py5", channels=["a"], base_model="demo", pool="demo",
                                 ridge_smoothing=1.5)
    assert smooth.state == "OPEN"

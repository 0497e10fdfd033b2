"""What the Sessions service's calls return (sessions.proto), as numpy arrays and plain values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._images import from_image, png_bytes, stack_images
from .v1 import sessions_pb2 as spb


@dataclass(frozen=True)
class ChannelCalibration:
    channel_id: str
    calibrated: bool  # False until min_stimuli stimuli have valid trials
    model_id: str  # "<session_id>/<channel_id>" once calibrated: a model like any other
    cv_r: float  # cross-validated Pearson r of the current fit
    penalty: float  # the chosen ridge penalty (the wire's `lambda`)
    stimuli: int
    agreement_with_previous: float  # r of this fit's and the previous fit's predictions


@dataclass(frozen=True)
class Calibration:
    version: int  # 0 before the first fit, +1 with every refit
    form: str  # RIDGE or FACTORIZED
    model_id: str  # the session's own model once calibrated (one output per channel)
    channels: list[ChannelCalibration]

    @classmethod
    def from_proto(cls, c: spb.CalibrationState) -> "Calibration":
        channels = [ChannelCalibration(ch.channel_id, ch.calibrated, ch.model_id, ch.cv_r,
                                       getattr(ch, "lambda"), ch.stimuli,
                                       ch.agreement_with_previous) for ch in c.channels]
        form = spb.ReadoutForm.Name(c.form) if c.form else "RIDGE"
        return cls(c.version, form, c.model_id, channels)

    @property
    def cv_r(self) -> np.ndarray:
        """Each channel's cross-validated r, in channel order (NaN when not calibrated)."""
        return np.array([ch.cv_r if ch.calibrated else np.nan for ch in self.channels])


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    state: str  # OPEN or CLOSED
    rig: str
    channels: list[tuple[str, str]]  # (id, name) in the session's channel order
    base_model: str
    pool: str
    pool_images: int
    notes: str
    created_unix_ms: int
    blocks: int
    stimuli: int
    trials: int
    calibration: Calibration

    @classmethod
    def from_proto(cls, s: spb.SessionInfo) -> "SessionInfo":
        return cls(s.session_id, spb.SessionState.Name(s.state), s.rig,
                   [(c.id, c.name) for c in s.channels], s.base_model, s.pool, s.pool_images,
                   s.notes, s.created_unix_ms, s.blocks, s.stimuli, s.trials,
                   Calibration.from_proto(s.calibration))


@dataclass(frozen=True)
class BlockStimulus:
    stimulus_id: str  # what report_responses names
    image: np.ndarray | None  # (H, W, 3) uint8 with encoding='raw'
    png: bytes | None  # with encoding='png'
    origin: str  # POOL_IMAGE, SYNTHESIZED or REFERENCE
    pool_image: str  # the pool image's name (POOL_IMAGE, REFERENCE)
    record_json: str  # SYNTHESIZED: the replayable synthesis record
    image_sha256: str  # of the PNG the server stored
    predicted: np.ndarray  # per channel when the block was made; empty before the first fit
    target_channel: str  # SYNTHESIZED: the channel it was made for
    prepared: bool  # SYNTHESIZED: prepared in the background before the block was asked for

    @property
    def record(self) -> dict[str, Any] | None:
        return json.loads(self.record_json) if self.record_json else None


@dataclass(frozen=True)
class Block:
    session_id: str
    block_id: str
    block_index: int
    stimuli: list[BlockStimulus]
    calibration_version: int
    uncalibrated_channels: list[str]
    stop_reason: str  # COMPLETED, or DEADLINE when a synthesis stopped early
    wall_ms: float
    replayed: bool  # handed out before under the same block_id
    prepared_stimuli: int  # stimuli taken from the syntheses prepared ahead

    @classmethod
    def from_proto(cls, b: spb.Block) -> "Block":
        stimuli = [BlockStimulus(s.stimulus_id, from_image(s.image), png_bytes(s.image),
                                 spb.StimulusOrigin.Name(s.origin), s.pool_image, s.record_json,
                                 s.image_sha256, np.array(s.predicted, dtype=np.float64),
                                 s.target_channel, s.prepared) for s in b.stimuli]
        return cls(b.session_id, b.block_id, b.block_index, stimuli, b.calibration_version,
                   list(b.uncalibrated_channels), b.stop_reason, b.wall_ms, b.replayed,
                   b.prepared_stimuli)

    @property
    def stimulus_ids(self) -> list[str]:
        return [s.stimulus_id for s in self.stimuli]

    @property
    def images(self) -> np.ndarray:
        """The block's images as one (count, H, W, 3) uint8 array (encoding='raw')."""
        return stack_images(self.stimuli)

    @property
    def predicted(self) -> np.ndarray:
        """(count, channels) predictions, or (count, 0) before the first fit."""
        return np.array([s.predicted for s in self.stimuli], dtype=np.float64).reshape(
            len(self.stimuli), -1)


@dataclass(frozen=True)
class ReportResult:
    stored: int  # new trials stored by this call
    duplicates: int  # trials already stored with identical values (retries): ignored
    total_trials: int
    calibration: Calibration
    prepared_invalidated: int  # prepared stimuli this report's refit made stale (restarted)


@dataclass(frozen=True)
class ExportResult:
    directory: str  # on the server
    files: list[str]  # relative to it

"""What the Stimloop service's calls return, as numpy arrays and plain Python values."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _records
from ._images import from_image, png_bytes, stack_images
from .v1 import stimloop_pb2 as pb


@dataclass(frozen=True)
class ModelInfo:
    """A model the server holds (ListModels / GetModel)."""

    id: str
    sha256: str
    demo: bool  # a built-in demo, not a model of a recorded neuron
    description: str
    input_shape: tuple[int, int, int]  # (height, width, channels)
    num_outputs: int  # 1 for a compact model, 219 for a shared one
    filters: tuple[int, ...]
    parameters: int
    macs_per_image: int
    backend: str

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> "ModelInfo":
        return cls(m.id, m.sha256, m.demo, m.description,
                   (m.input_height, m.input_width, m.input_channels), m.num_outputs,
                   tuple(m.filters), m.parameters, m.macs_per_image, m.backend)


@dataclass(frozen=True)
class Gradient:
    """InputGradient's answer: responses (N, outputs) and d(seeded output)/d(pixel level) as
    float32 (N, H, W, 3); without the N axis when a single image was given."""

    responses: np.ndarray
    gradients: np.ndarray
    request_id: str = ""


@dataclass(frozen=True)
class Stimulus:
    """A synthesized stimulus: the 8-bit image the reported response was computed on."""

    index: int  # position in the batch
    seed: int  # spec.seed + index
    image: np.ndarray | None  # (H, W, 3) uint8 with encoding='raw'
    png: bytes | None  # the PNG file's bytes with encoding='png'
    response: float  # the objective's response to the 8-bit image
    outputs: np.ndarray  # every output of the model for the 8-bit image, float32
    record_json: str  # the full replayable record, as the server wrote it

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_json)

    def save(self, path: str | os.PathLike) -> tuple[str, str]:
        """Writes PATH.png and PATH.json as `stimloop synthesize --out PATH.png` does (same
        bytes); needs encoding='png'. Returns both paths."""
        if self.png is None:
            raise ValueError("save: this stimulus came as a raw array; synthesize with "
                             "encoding='png' to get the server's PNG")
        return _records.save(self.png, self.record_json, path)

    @classmethod
    def from_proto(cls, s: pb.SynthesizedStimulus) -> "Stimulus":
        return cls(s.index, s.seed, from_image(s.image), png_bytes(s.image), s.response,
                   np.array(s.outputs, dtype=np.float32), s.record_json)


@dataclass(frozen=True)
class SynthesisEvent:
    """One event of a Synthesize stream; `kind` is ACCEPTED, PROGRESS, SNAPSHOT, STIMULUS or
    DONE."""

    kind: str
    request_id: str
    steps_done: int = 0
    steps: int = 0
    best_response: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per stimulus
    snapshot: list[np.ndarray | bytes] = field(default_factory=list)  # SNAPSHOT: best images
    stimulus: Stimulus | None = None  # STIMULUS
    stop_reason: str = ""  # DONE, STIMULUS: COMPLETED, DEADLINE or CANCELLED
    queue_ms: float = 0.0  # DONE
    wall_ms: float = 0.0  # DONE

    @classmethod
    def from_proto(cls, e: pb.SynthesisEvent) -> "SynthesisEvent":
        snapshot = [from_image(i) if i.encoding == pb.RAW_RGB8 else bytes(i.data)
                    for i in e.snapshot]
        return cls(pb.SynthesisEvent.Kind.Name(e.kind), e.request_id, e.steps_done, e.steps,
                   np.array(e.best_response, dtype=np.float64), snapshot,
                   Stimulus.from_proto(e.stimulus) if e.HasField("stimulus") else None,
                   e.stop_reason, e.queue_ms, e.wall_ms)


@dataclass(frozen=True)
class SynthesisResult:
    """The blocking form of Synthesize: every stimulus of the batch and how the run ended."""

    stimuli: list[Stimulus]
    stop_reason: str
    request_id: str
    queue_ms: float
    wall_ms: float

    @property
    def images(self) -> np.ndarray:
        """The stimuli as one (count, H, W, 3) uint8 array (encoding='raw')."""
        return stack_images(self.stimuli)

    @property
    def responses(self) -> np.ndarray:
        return np.array([s.response for s in self.stimuli], dtype=np.float64)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [s.record for s in self.stimuli]

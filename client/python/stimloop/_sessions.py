"""The calls of stimloop.v1.Sessions (closed-loop sessions), mixed into Client.

Every call is safe to retry (sessions.proto): OpenSession is keyed by the session id, NextBlock by
an optional block_id, ReportResponses by (stimulus_id, repeat_index) per trial.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._channel import DEFAULT
from ._images import encoding_value
from ._session_types import Block, Calibration, ExportResult, ReportResult, SessionInfo
from ._spec import enum_value, priority_value, synthesis_spec
from .v1 import sessions_pb2 as spb

_FORMS = {"ridge": spb.RIDGE, "factorized": spb.FACTORIZED}
_STRATEGIES = {"pool": spb.POOL, "synthesize": spb.SYNTHESIZE, "adept": spb.ADEPT,
               "committee": spb.COMMITTEE}


def block_strategy(kind: Any = "pool", *, mix: dict[str, int] | None = None,
             references: Sequence[str] = (), seed: int = 0,
             synthesis: dict[str, Any] | None = None) -> spb.Strategy:
    """A block's strategy: one kind ('pool', 'synthesize', 'adept', 'committee') or a mix
    {kind: count}; references: pool image names shown first in every block; synthesis:
    SynthesisSpec fields for SYNTHESIZE stimuli, by name (objective, method, steps, ...)."""
    s = spb.Strategy(kind=enum_value("strategy", kind, _STRATEGIES), references=list(references),
                     seed=seed)
    for name, count in (mix or {}).items():
        s.mix.add(kind=enum_value("strategy.mix", name, _STRATEGIES), count=count)
    if synthesis is not None:
        options = dict(synthesis)
        s.synthesis.CopyFrom(synthesis_spec(options.pop("objective", "max"), **options))
    return s


class SessionsMixin:
    """Client's session calls (the plumbing, _call and sessions_stub, comes from Client)."""

    def open_session(self, session_id: str, *, channels: Sequence[str | tuple[str, str]],
                     base_model: str, pool: str, rig: str = "", readout: Any = "ridge",
                     folds: int = 0, min_stimuli: int = 0, ridge_smoothing: float = 0.0,
                     prepared_min_agreement: float = 0.0, notes: str = "",
                     timeout: Any = DEFAULT) -> SessionInfo:
        """Creates a session, or returns it unchanged when the same request was made before
        (FailedPrecondition when the id exists with a different one). channels: ids, or
        (id, name) pairs; base_model: the model whose features the readouts are fitted on;
        pool: a --pool NAME of the server; readout: 'ridge' or 'factorized'; folds and
        min_stimuli: 0 for the server's defaults (5 and 10); ridge_smoothing: sigma of the ridge
        readout's spatial prior (0: none; 3 recommended for shared-model bases);
        prepared_min_agreement: how much a refit may change a channel before the syntheses
        prepared for the next block restart (0: the server's 0.95)."""
        request = spb.OpenSessionRequest(
            session_id=session_id, rig=rig, base_model=base_model, pool=pool, notes=notes,
            calibration=spb.CalibrationSettings(form=enum_value("readout", readout, _FORMS),
                                                folds=folds, min_stimuli=min_stimuli,
                                                ridge_smoothing=ridge_smoothing,
                                                prepared_min_agreement=prepared_min_agreement))
        for c in channels:
            cid, name = (c, "") if isinstance(c, str) else c
            request.channels.add(id=cid, name=name)
        return SessionInfo.from_proto(self._session_call("OpenSession", request, timeout))

    def next_block(self, session_id: str, count: int, strategy: Any = "pool", *,
                   block_id: str = "", priority: Any = None, deadline_ms: float = 0.0,
                   encoding: str = "raw", prepare_next: bool = True,
                   timeout: Any = DEFAULT) -> Block:
        """The next block of `count` stimuli. strategy: a kind name or stimloop.block_strategy(...).
        block_id: an idempotency key (a retry returns the same block). Priority RIG unless
        given; encoding 'raw' (arrays) or 'png' (the stored PNGs' bytes). prepare_next: let the
        server prepare the next block's syntheses while this one is shown."""
        if not isinstance(strategy, spb.Strategy):
            strategy = block_strategy(strategy)
        request = spb.NextBlockRequest(
            session_id=session_id, count=count, strategy=strategy, block_id=block_id,
            deadline_ms=deadline_ms, priority=priority_value(priority) if priority else 0,
            encoding=encoding_value(encoding), no_prepare_next=not prepare_next)
        return Block.from_proto(self._session_call("NextBlock", request, timeout))

    def report_responses(self, session_id: str, stimulus_ids: Sequence[str], responses: Any, *,
                         repeat_index: Any = 0, aborted: Any = False,
                         timeout: Any = DEFAULT) -> ReportResult:
        """Stores trials, all or none, and refits the calibration. responses: (trials, channels)
        in the session's channel order; stimulus_ids, repeat_index and aborted: one per trial
        (or one for all)."""
        values = np.asarray(responses, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != len(stimulus_ids):
            raise ValueError(f"responses: shape {values.shape}, expected ({len(stimulus_ids)}, "
                             "channels): one row per stimulus id")
        repeats = np.broadcast_to(np.asarray(repeat_index), (len(stimulus_ids),))
        aborts = np.broadcast_to(np.asarray(aborted, dtype=bool), (len(stimulus_ids),))
        request = spb.ReportResponsesRequest(session_id=session_id)
        for sid, row, rep, abort in zip(stimulus_ids, values, repeats, aborts):
            request.trials.add(stimulus_id=sid, responses=row.tolist(), repeat_index=int(rep),
                               aborted=bool(abort))
        r = self._session_call("ReportResponses", request, timeout)
        return ReportResult(r.stored, r.duplicates, r.total_trials,
                            Calibration.from_proto(r.calibration), r.prepared_invalidated)

    def get_session(self, session_id: str, *, timeout: Any = DEFAULT) -> SessionInfo:
        return SessionInfo.from_proto(self._session_call(
            "GetSession", spb.GetSessionRequest(session_id=session_id), timeout))

    def list_sessions(self, *, timeout: Any = DEFAULT) -> list[SessionInfo]:
        """Every session the server holds, oldest first."""
        r = self._session_call("ListSessions", spb.ListSessionsRequest(), timeout)
        return [SessionInfo.from_proto(s) for s in r.sessions]

    def close_session(self, session_id: str, *, timeout: Any = DEFAULT) -> SessionInfo:
        """No more blocks or reports; the calibrated models stay. Idempotent."""
        return SessionInfo.from_proto(self._session_call(
            "CloseSession", spb.CloseSessionRequest(session_id=session_id), timeout))

    def export_session(self, session_id: str, *, timeout: Any = DEFAULT) -> ExportResult:
        """Writes the session as a plain directory on the server (sessions.proto)."""
        r = self._session_call("ExportSession", spb.ExportSessionRequest(session_id=session_id),
                               timeout)
        return ExportResult(r.directory, list(r.files))

    def _session_call(self, name: str, request: Any, timeout: Any) -> Any:
        return self._call(getattr(self.sessions_stub, name), request, timeout)

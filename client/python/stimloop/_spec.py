"""SynthesisSpec from keyword arguments: the CLI's option names, values as Python types."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._images import to_image
from .v1 import stimloop_pb2 as pb

# Enum-valued fields: the names the CLI takes (lower case, '-' or '_'), as the wire's values.
_ENUMS = {
    "objective": {"max": pb.MAX, "min": pb.MIN, "population": pb.POPULATION,
                  "channel": pb.CHANNEL, "adversarial": pb.ADVERSARIAL},
    "method": {"cowley2026": pb.COWLEY2026, "adam": pb.ADAM, "pgd": pb.PGD},
    "population_mode": {"one_hot": pb.ONE_HOT, "contrast": pb.CONTRAST, "match": pb.MATCH},
    "norm": {"linf": pb.LINF, "l2": pb.L2},
    "direction": {"up": pb.UP, "down": pb.DOWN},
}
_INITS = {"noise": pb.NOISE, "gray": pb.GRAY}
_PRIORITIES = {"rig": pb.RIG, "interactive": pb.INTERACTIVE, "campaign": pb.CAMPAIGN}


def enum_value(field: str, value: Any, table: dict[str, int]) -> int:
    if isinstance(value, str):
        key = value.lower().replace("-", "_")
        if key not in table:
            raise ValueError(f"{field}: {value[:100]!r}, expected one of {', '.join(table)}")
        return table[key]
    return int(value)


def priority_value(priority: Any) -> int:
    """'rig', 'interactive', 'campaign' (or the wire's Priority value)."""
    return enum_value("priority", priority, _PRIORITIES)


def synthesis_spec(objective: Any = "max", **options: Any) -> pb.SynthesisSpec:
    """The spec for `objective` and any SynthesisSpec field given by name (stimloop.proto).

    Enum fields take the CLI's names ('max', 'adam', 'one-hot', 'linf', 'down'); `init` takes
    'noise', 'gray' or an (H, W, 3) uint8 array (the image to start from); `target_response`
    sets has_target_response. Unset fields keep the server's defaults.
    """
    spec = pb.SynthesisSpec(objective=enum_value("objective", objective, _ENUMS["objective"]))
    for name, value in options.items():
        if value is None:
            continue
        if name in _ENUMS:
            setattr(spec, name, enum_value(name, value, _ENUMS[name]))
        elif name == "init":
            if isinstance(value, str):
                spec.init = enum_value("init", value, _INITS)
            else:
                spec.init = pb.IMAGE
                spec.init_image.CopyFrom(to_image(value, "init"))
        elif name == "target_response":
            spec.has_target_response = True
            spec.target_response = float(value)
        elif name in ("targets", "target_responses"):
            getattr(spec, name).extend(np.asarray(value).ravel().tolist())
        elif name in pb.SynthesisSpec.DESCRIPTOR.fields_by_name and name != "objective":
            setattr(spec, name, value.item() if isinstance(value, np.generic) else value)
        else:
            raise TypeError(f"synthesize: unknown option {name!r} (see SynthesisSpec in "
                            "proto/stimloop/v1/stimloop.proto)")
    return spec

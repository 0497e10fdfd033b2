"""Stimuli saved exactly as `stimloop synthesize --out PATH.png` saves them: the PNG, and beside
it PATH.json, the server's record with "png" set to PATH, in the CLI's JSON layout (keys sorted,
two-space indent, numbers as the server wrote them), so the files are byte-identical to the CLI's.
"""

from __future__ import annotations

import json
import os


class _Number(str):
    """A JSON number kept as its text: re-encoding a float could change its last digits."""


def _dump(value, indent: int) -> str:
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(value[k], indent + 1)}"
                 for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _dump(v, indent + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, _Number):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def record_text(record_json: str, png_path: str) -> str:
    """The record file's text for a stimulus saved as png_path."""
    record = json.loads(record_json, parse_float=_Number, parse_int=_Number)
    record["png"] = png_path
    return _dump(record, 0) + "\n"


def record_path(png_path: str) -> str:
    """PATH.json beside PATH.png (the CLI's rule)."""
    if not png_path.endswith(".png"):
        raise ValueError(f"path: {png_path[:200]!r} does not end in .png")
    return png_path[:-4] + ".json"


def save(png: bytes, record_json: str, path: str | os.PathLike) -> tuple[str, str]:
    """Writes PATH.png and PATH.json; returns both paths."""
    png_path = os.fspath(path)
    json_path = record_path(png_path)
    with open(png_path, "wb") as f:
        f.write(png)
    with open(json_path, "w", encoding="utf-8") as f:
        f.write(record_text(record_json, png_path))
    return png_path, json_path

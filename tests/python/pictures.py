"""Test images made in numpy, and a minimal PNG writer so that the CLI can read the same pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def grating(orientation_deg: float, period: float = 10.0, size: int = 112) -> np.ndarray:
    """A sinusoidal grating, uint8 (size, size, 3)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = np.deg2rad(orientation_deg)
    phase = 2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period
    gray = np.round(127.5 + 127.5 * np.sin(phase)).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def noise(seed: int, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_png(image: np.ndarray, path: Path) -> Path:
    """An 8-bit RGB PNG, every row unfiltered: enough for any decoder."""
    height, width, _ = image.shape
    rows = b"".join(b"\x00" + image[r].tobytes() for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                     chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path

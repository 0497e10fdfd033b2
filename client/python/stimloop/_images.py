"""Images between numpy and the wire: uint8 arrays of shape (H, W, 3), or PNG files' bytes."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .v1 import stimloop_pb2 as pb

# One image: an (H, W, 3) uint8 array (RGB, row-major) or the bytes of a PNG file.
ImageLike = Union[np.ndarray, bytes]
# One image, a stack of them (N, H, W, 3), or a sequence of single images.
ImagesLike = Union[ImageLike, Sequence[ImageLike]]


def to_image(image: ImageLike, name: str = "image") -> pb.Image:
    """The Image message for one array (RAW_RGB8) or PNG file's bytes (PNG)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return pb.Image(encoding=pb.PNG, data=bytes(image))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"{name}: dtype {array.dtype}, expected uint8 (pixel levels 0..255)")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name}: shape {array.shape}, expected (height, width, 3) RGB")
    height, width = array.shape[:2]
    return pb.Image(encoding=pb.RAW_RGB8, height=height, width=width,
                    data=np.ascontiguousarray(array).tobytes())


def to_images(images: ImagesLike, name: str = "images") -> tuple[list[pb.Image], bool]:
    """Image messages for a batch, and whether the caller gave a single image (not a batch)."""
    if isinstance(images, (bytes, bytearray, memoryview)):
        return [to_image(images, f"{name}[0]")], True
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [to_image(images, name)], True
        if images.ndim != 4:
            raise ValueError(f"{name}: shape {images.shape}, expected (N, height, width, 3) or "
                             "(height, width, 3)")
    items = list(images)
    if not items:
        raise ValueError(f"{name}: no images")
    return [to_image(image, f"{name}[{i}]") for i, image in enumerate(items)], False


def from_image(image: pb.Image) -> np.ndarray | None:
    """The (H, W, 3) uint8 array of a RAW_RGB8 image; None for a PNG (see its bytes instead)."""
    if image.encoding != pb.RAW_RGB8:
        return None
    array = np.frombuffer(image.data, dtype=np.uint8)
    return array.reshape(image.height, image.width, 3)


def png_bytes(image: pb.Image) -> bytes | None:
    """The PNG file's bytes of a PNG image; None for a raw one."""
    return bytes(image.data) if image.encoding == pb.PNG else None


def stack_images(stimuli) -> np.ndarray:
    """The `image` arrays of stimuli as one (count, H, W, 3) array."""
    if any(s.image is None for s in stimuli):
        raise ValueError("images: the stimuli came as PNGs (encoding='png'); see their .png")
    return np.stack([s.image for s in stimuli])


def encoding_value(encoding: str) -> int:
    """'raw' or 'png' as the wire's ImageEncoding."""
    values = {"raw": pb.RAW_RGB8, "png": pb.PNG}
    if encoding not in values:
        raise ValueError(f"encoding: {encoding!r}, expected 'raw' (arrays) or 'png' (PNG bytes)")
    return values[encoding]

"""PNG images of a trained network, without an imaging library: the weights as a grid, the confusion matrix.

A minimal PNG encoder (8-bit RGB, zlib) and a 3x5 pixel digit font are enough for the two pictures
a trial uploads as Optuna artifacts.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

__all__ = ["confusion_image", "weights_image", "write_png"]

# 3 x 5 digit glyphs, rows top to bottom, 3 bits per row (MSB = left column); "-" for "no prediction".
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 2, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "-": (0, 0, 7, 0, 0),
}  # fmt: skip


def write_png(path: Union[str, Path], rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as a PNG file."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def weights_image(weights: np.ndarray, image_shape: Tuple[int, int], min_tile: int = 24) -> np.ndarray:
    """The input weights of every neuron as a grid of receptive fields (gray, 0 black, w_max white).

    Args:
        weights: (n_input, N) weights of one network.
        image_shape: (h, w) of an input image (h * w = n_input).
        min_tile: tiles are scaled up (nearest) to at least this many pixels.
    """
    h, w = image_shape
    n_in, n = weights.shape
    if h * w != n_in:
        raise ValueError(f"image shape {image_shape} does not match {n_in} inputs")
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    scale = max(1, -(-min_tile // max(h, w)))
    top = float(weights.max()) if weights.size and weights.max() > 0 else 1.0
    th, tw = h * scale + 1, w * scale + 1
    grid = np.full((rows * th + 1, cols * tw + 1), 64, dtype=np.uint8)
    for j in range(n):
        tile = np.clip(weights[:, j].reshape(h, w) / top, 0, 1) * 255
        tile = np.kron(tile, np.ones((scale, scale)))
        r, c = divmod(j, cols)
        grid[r * th + 1 : r * th + th, c * tw + 1 : c * tw + tw] = tile.astype(np.uint8)
    return np.repeat(grid[:, :, None], 3, axis=2)


def _draw_text(img: np.ndarray, text: str, x: int, y: int, color: Sequence[int], size: int = 2) -> None:
    for k, ch in enumerate(text):
        glyph = _FONT.get(ch)
        if glyph is None:
            continue
        for r, bits in enumerate(glyph):
            for c in range(3):
                if bits & (4 >> c):
                    y0, x0 = y + r * size, x + (k * 4 + c) * size
                    img[y0 : y0 + size, x0 : x0 + size] = color


def confusion_image(confusion: List[List[int]]) -> np.ndarray:
    """A (C, C + 1) confusion matrix as a heat map with the counts written in (rows: true class;
    columns: predicted class, the last one ``-`` for no prediction)."""
    m = np.asarray(confusion, dtype=np.int64)
    n_rows, n_cols = m.shape
    digits = max(1, len(str(int(m.max()) if m.size else 0)))
    size = 2
    cw, ch = max(28, digits * 4 * size + 6), 22
    left, top = 4 * size * 2 + 8, 5 * size + 10
    img = np.full((top + n_rows * ch + 1, left + n_cols * cw + 1, 3), 255, dtype=np.uint8)
    totals = np.maximum(m.sum(axis=1, keepdims=True), 1)
    share = m / totals
    for r in range(n_rows):
        _draw_text(img, str(r), 4, top + r * ch + 6, (0, 0, 0), size)
        for c in range(n_cols):
            x0, y0 = left + c * cw, top + r * ch
            v = float(share[r, c])
            base = np.array([255, 255, 255]) * (1 - v) + np.array([31, 119, 180]) * v
            img[y0 + 1 : y0 + ch, x0 + 1 : x0 + cw] = base.astype(np.uint8)
            text = str(int(m[r, c]))
            color = (255, 255, 255) if v > 0.5 else (0, 0, 0)
            _draw_text(img, text, x0 + (cw - len(text) * 4 * size) // 2 + 1, y0 + 6, color, size)
    for c in range(n_cols):
        label = str(c) if c < n_cols - 1 else "-"
        _draw_text(img, label, left + c * cw + cw // 2 - 2, 4, (0, 0, 0), size)
    img[top::ch, left:] = 160
    img[top:, left::cw] = 160
    return img

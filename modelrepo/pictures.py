"""Points shown as images (CONTRACT section 4): the pixels of a grid of points, in NumPy.

    pixel = round(255 * (clip(v, lo, hi) - lo) / (hi - lo))          each value v of a point, [lo, hi] = image.range
    grid  = ceil(sqrt(n)) columns, the n images row by row, no borders, no scaling; cells past the n-th are 0

round is to the nearest integer, halves to even (NumPy's rint, Python's round).
"""

import math

import numpy as np

from modelrepo.manifest import Image


def pixels(points: np.ndarray, image: Image) -> np.ndarray:
    """points (n, *data_shape) -> uint8 (n, height, width, channels), each value by the contract's formula."""
    lo, hi = image.range
    values = np.asarray(points, np.float64).reshape(len(points), image.channels, image.height, image.width)
    scaled = np.rint(255.0 * (np.clip(values, lo, hi) - lo) / (hi - lo))  # (n, C, H, W)
    return scaled.astype(np.uint8).transpose(0, 2, 3, 1)


def grid(points: np.ndarray, image: Image) -> np.ndarray:
    """points (n, *data_shape) -> uint8 (rows * height, columns * width, channels): ceil(sqrt(n)) columns."""
    tiles = pixels(points, image)  # (n, H, W, C)
    n = len(tiles)
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * columns, image.height, image.width, image.channels), np.uint8)
    canvas[:n] = tiles
    canvas = canvas.reshape(rows, columns, image.height, image.width, image.channels)
    return canvas.transpose(0, 2, 1, 3, 4).reshape(rows * image.height, columns * image.width, image.channels)

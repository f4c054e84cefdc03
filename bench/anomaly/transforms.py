"""Out-of-distribution sets made from a model's own in-distribution points (issue 19, section 4).

Points are rows of the model's data shape; the image transforms see them as square images (8 x 8 digits, 28 x 28
MNIST). Sets drawn as grey images in [0, 1] (noise, constants, the other data set) are then observed as the model's
data is (Observation): binarised at 0.5 (digits-binary), drawn pixel by pixel as Bernoulli(grey) (mnist-binary), or
quantised to the 17 levels and dequantised with uniform noise (digits).
"""

import math
from dataclasses import dataclass

import numpy as np

from training.data import Dataset


def as_images(rows: np.ndarray) -> np.ndarray:
    """(N, *data_shape) -> (N, side, side); the data must be a square image."""
    size = math.prod(rows.shape[1:])
    side = math.isqrt(size)
    if side * side != size:
        raise ValueError(f"points of {size} values are not square images")
    return rows.reshape(len(rows), side, side)


def invert(rows: np.ndarray) -> np.ndarray:
    """1 - x: ink becomes background (an involution)."""
    return (1.0 - rows).astype(np.float32)


def flip_left_right(rows: np.ndarray) -> np.ndarray:
    return as_images(rows)[:, :, ::-1].reshape(rows.shape).astype(np.float32)


def rotate_90(rows: np.ndarray) -> np.ndarray:
    """A quarter turn anticlockwise."""
    return np.rot90(as_images(rows), 1, axes=(1, 2)).reshape(rows.shape).astype(np.float32)


def area_resize(images: np.ndarray, side: int) -> np.ndarray:
    """(N, h, h) -> (N, side, side), each output pixel the area-weighted mean of the input pixels it covers
    (box filtering: an average pool when h is a multiple of side; a blend of neighbours when upsampling)."""
    weights = _area_weights(images.shape[1], side)  # (side, h)
    return np.einsum("ij,njk,lk->nil", weights, images.astype(np.float64), weights).astype(np.float32)


def _area_weights(source: int, target: int) -> np.ndarray:
    edges = np.linspace(0.0, source, target + 1)  # the output cells' edges in input pixels
    starts, ends = edges[:-1, None], edges[1:, None]  # (target, 1)
    pixels = np.arange(source)[None, :]  # (1, source)
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0.0, None)  # (target, source)
    return overlap / overlap.sum(1, keepdims=True)


@dataclass(frozen=True)
class Observation:
    """How grey images in [0, 1] become points of the model's data, as its data set made them."""

    kind: str  # "threshold" | "bernoulli" | "dequantise"
    levels: int = 0  # dequantise: the number of grey levels (17 for the digits)

    @classmethod
    def of(cls, dataset: Dataset) -> "Observation":
        if dataset.binarize:
            return cls("bernoulli")
        if dataset.dequantize_levels is not None:
            return cls("dequantise", dataset.dequantize_levels)
        return cls("threshold")  # binary data with no draw of its own: digits-binary's pixel >= 8 of 0..16

    @property
    def continuous(self) -> bool:
        return self.kind == "dequantise"

    def __call__(self, grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grey = np.clip(np.asarray(grey, np.float64), 0.0, 1.0)
        if self.kind == "bernoulli":
            return (rng.uniform(size=grey.shape) < grey).astype(np.float32)
        if self.kind == "threshold":
            return (grey >= 0.5).astype(np.float32)
        pixels = np.rint(grey * (self.levels - 1))
        return ((pixels + rng.uniform(size=grey.shape)) / self.levels).astype(np.float32)


def ood_sets(normal: np.ndarray, observe: Observation, other: np.ndarray, rng: np.random.Generator
             ) -> dict[str, np.ndarray]:
    """The out-of-distribution sets for in-distribution points `normal` (N, *data_shape): each as many points as
    `normal`, but the other data set (`other`: grey images of any square size, resized to the model's)."""
    shape, n = normal.shape, len(normal)
    side = as_images(normal).shape[1]
    density = float(normal.mean())  # the data's mean ink (grey level)
    sets = {
        "inverted (1 - x)": invert(normal),
        "flipped left-right": flip_left_right(normal),
        "rotated 90°": rotate_90(normal),
        "uniform noise": observe(rng.uniform(size=shape), rng),
        f"Bernoulli noise, p = {density:.2f}": observe((rng.uniform(size=shape) < density).astype(np.float64), rng),
        "blank (all 0)": observe(np.zeros(shape), rng),
        "constant (all 1)": observe(np.ones(shape), rng),
    }
    if observe.continuous:
        sets["constant (all 0.5)"] = observe(np.full(shape, 0.5), rng)
    resized = area_resize(other, side).reshape(len(other), *shape[1:])
    sets["other data set"] = observe(resized, rng)
    assert all(len(points) == n for name, points in sets.items() if name != "other data set")
    return sets

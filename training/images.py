"""The manifest's `image` entry (CONTRACT section 4) for the data a model was trained on: how the service and the
explorer page show one point as a picture.

The built-in sets are images whatever shape their rows take (the 8x8 digits are rows of 64 values, MNIST 28x28);
a user's own file is one when `--image-shape H,W` (or H,W,C) says so. Values are clipped to the entry's range:
[0, 1] for every built-in set (binary pixels, dequantised grey levels / 17, Bernoulli means).
"""

import math

from training.config import DataConfig

BUILTIN_IMAGES = {"digits": (8, 8), "digits-binary": (8, 8), "mnist-binary": (28, 28)}  # source -> (height, width)


def image_entry(data: DataConfig, data_shape: tuple[int, ...]) -> dict | None:
    """{"height", "width", "channels", "range"} for a model of `data_shape` trained on `data`, or None when the
    data are not known to be images. Raises ValueError when the image does not hold a point's values."""
    shape = data.image_shape or BUILTIN_IMAGES.get(data.source)
    if shape is None:
        return None
    height, width, channels = (*shape, 1)[:3]
    if height * width * channels != math.prod(data_shape):
        raise ValueError(f"image shape {list(shape)} is {height * width * channels} values, but a point of data "
                         f"shape {list(data_shape)} has {math.prod(data_shape)}; give --image-shape H,W (or H,W,C) "
                         "whose product is the point's size")
    return {"height": height, "width": width, "channels": channels, "range": list(data.image_range)}

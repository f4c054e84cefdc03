"""Check what a client sent, whatever its wire format: checked float32 arrays, or a 4xx naming the field and the fix."""

import math

import numpy as np

from service.errors import InvalidInput, LimitExceeded

NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float
FLOAT32 = np.dtype(np.float32)


def parse_batch(values: list | np.ndarray, point_shape: tuple[int, ...], field: str, max_batch: int) -> np.ndarray:
    """A list (JSON) or array (.npy) of points, each shaped as point_shape or flat -> (N, *point_shape) float32."""
    if isinstance(values, np.ndarray) and values.ndim == 0:
        raise InvalidInput(f"{field}: a single number; send an array [N, *{list(point_shape)}] of points")
    if not isinstance(values, (list, np.ndarray)) or not len(values):
        raise InvalidInput(f"{field}: empty batch; send a list of 1 to {max_batch} points, each "
                           f"{_point_text(point_shape)}")
    if len(values) > max_batch:
        raise LimitExceeded(f"{field}: {len(values)} points; at most {max_batch} per request (VAE_MAX_BATCH)")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise InvalidInput(f"{field}: points are ragged; each point must be numbers nested as "
                           f"{_point_text(point_shape)}") from None
    if array.dtype.kind not in NUMERIC_KINDS:
        raise InvalidInput(f"{field}: must hold only numbers (no strings or nulls), each point nested as "
                           f"{_point_text(point_shape)}")
    if array.shape[1:] != point_shape:
        if array.shape[1:] != (math.prod(point_shape),):
            raise InvalidInput(f"{field}: each point has shape {list(array.shape[1:])}; this model takes "
                               f"{_point_text(point_shape)}")
        array = array.reshape(len(array), *point_shape)
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 becomes inf, a sum may overflow
        batch = np.ascontiguousarray(array) if array.dtype is FLOAT32 else array.astype(np.float32)
        total = batch.sum()
    # One reduction in the common case: a finite sum means finite values; a sum that is not finite (NaN or
    # infinity in it, or an overflow) sends the batch to the exact check.
    if not math.isfinite(total) and not np.isfinite(batch).all():
        finite = np.isfinite(batch.reshape(len(batch), -1)).all(axis=1)
        first = int(np.argmin(finite))
        raise InvalidInput(f"{field}[{first}]: holds NaN, infinity, or a number too large for float32; "
                           "send finite numbers")
    return batch


def _point_text(point_shape: tuple[int, ...]) -> str:
    """How a point is shaped, for error messages (built only when one is sent)."""
    size = math.prod(point_shape)
    return f"{list(point_shape)}" + (f" (or {size} numbers flat)" if len(point_shape) > 1 else "")


def check_probability_range(batch: np.ndarray, field: str) -> None:
    """Bernoulli data must lie in [0, 1]."""
    inside = ((batch >= 0) & (batch <= 1)).reshape(len(batch), -1).all(axis=1)
    if not inside.all():
        first = int(np.argmin(inside))
        raise InvalidInput(f"{field}[{first}]: this model has a Bernoulli likelihood, so every value must lie in "
                           "[0, 1]; binarise or rescale the data")


def check_limit(value: int, limit: int, field: str, setting: str) -> None:
    if value > limit:
        raise LimitExceeded(f"{field}: {value} is over the limit of {limit} ({setting})")

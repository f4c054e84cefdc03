"""Binary payloads: NumPy's .npy for a request's array, .npz for a response's arrays (never pickles), and PNG
grids of points shown as images (modelrepo.pictures, written by Pillow).

A .npy body is read by its header alone (dtype, shape, order), checked, then viewed in place: a malformed,
truncated or oversized body is a 400, not a crash, and nothing in it is ever executed.
"""

import io
import math

import numpy as np
from PIL import Image as PillowImage

from modelrepo.files import npz_bytes
from modelrepo.manifest import Image
from modelrepo.pictures import grid
from service.dataplane.inputs import NUMERIC_KINDS
from service.errors import UnreadableBody

NPY, NPZ, PNG = "application/x-npy", "application/x-npz", "image/png"
MAX_HEADER_BYTES = 10_000


def read_npy(body: bytes, field: str) -> np.ndarray:
    """The bytes of numpy.save(array) -> the array, numbers only (any int, uint, float or bool dtype)."""
    fix = "send the bytes numpy.save writes for one array of numbers"
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise UnreadableBody(f"{field}: not a .npy array ({exc}); {fix}") from None
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnreadableBody(f"{field}: dtype {dtype.str} is not a plain number type; {fix}")
    count = math.prod(shape)
    data_bytes = len(body) - stream.tell()
    if data_bytes != count * dtype.itemsize:
        raise UnreadableBody(f"{field}: the header promises {list(shape)} of {dtype.str} ({count * dtype.itemsize} "
                             f"bytes) but {data_bytes} bytes follow it; {fix}")
    array = np.frombuffer(body, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def write_npz(content: dict) -> bytes:
    """Every field of a response as one array of an uncompressed .npz (strings as 0-d unicode arrays)."""
    return npz_bytes(content)


def write_png(points: np.ndarray, image: Image) -> bytes:
    """points (n, *data_shape) -> one PNG: their grid (modelrepo.pictures.grid), grey or RGB."""
    pixels = grid(points, image)  # (rows * H, columns * W, C) uint8
    picture = PillowImage.fromarray(pixels[..., 0] if image.channels == 1 else pixels, "L" if image.channels == 1
                                    else "RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()

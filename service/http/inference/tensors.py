"""Tensors of the Open Inference Protocol as NumPy arrays, both ways: JSON `data` (flat or nested, row-major) or
the binary tensor extension's raw little-endian bytes, parsed straight into an array without a Python list.

Every size is checked before anything is allocated from it: a shape that disagrees with the bytes or the values
sent is a 400 naming the tensor, never a crash or an allocation the body does not pay for.
"""

import math

import numpy as np

from service.errors import MalformedInference
from service.http.codecs import refuse_booleans

# The protocol's datatypes that hold numbers, as NumPy reads their bytes (little-endian, C order). BYTES (strings)
# and BF16 (no NumPy type) are not taken: every input of ours is numbers.
DATATYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
TAKEN = ", ".join(DATATYPES)


def dtype_of(datatype: object, where: str) -> np.dtype:
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise MalformedInference(f"{where}.datatype: {datatype!r} is not taken; send one of {TAKEN} (FP32 is the "
                             "models' own)")
    return dtype


def from_json(data: object, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    """A tensor's JSON `data` (its values flat in row-major order, or nested) -> an array of `shape`."""
    if not isinstance(data, list):
        raise MalformedInference(f"{where}.data: must be a list of the tensor's values (flat, row-major); or send the "
                             "tensor as binary data")
    if dtype.kind != "b":
        refuse_booleans(data, f"{where}.data")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise MalformedInference(f"{where}.data: ragged nested lists; send the values flat in row-major order") from None
    if array.dtype.kind not in "biuf" or (dtype.kind == "b") != (array.dtype.kind == "b"):
        wanted = "true or false" if dtype.kind == "b" else "numbers"
        raise MalformedInference(f"{where}.data: datatype {datatype_name(dtype)} takes {wanted} only")
    if dtype.kind in "iu" and array.dtype.kind == "f":
        raise MalformedInference(f"{where}.data: datatype {datatype_name(dtype)} takes whole numbers only; send FP32 "
                             "for fractions")
    if array.size != math.prod(shape):
        raise MalformedInference(f"{where}: shape {list(shape)} holds {math.prod(shape)} values, but data has "
                             f"{array.size}; make them agree")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond FP32: infinity, which the data plane names
        try:
            return array.astype(dtype).reshape(shape)
        except OverflowError:
            raise MalformedInference(f"{where}.data: a value does not fit datatype {datatype_name(dtype)}") from None


def from_bytes(body: bytes, offset: int, size: int, shape: tuple[int, ...], dtype: np.dtype,
               where: str) -> np.ndarray:
    """`size` bytes of the body from `offset` (its length checked by the caller) -> an array of `shape`, a view."""
    expected = math.prod(shape) * dtype.itemsize
    if size != expected:
        raise MalformedInference(f"{where}: binary_data_size is {size} bytes, but shape {list(shape)} of "
                             f"{datatype_name(dtype)} is {expected} bytes; make them agree")
    return np.frombuffer(body, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)


def datatype_name(dtype: np.dtype) -> str:
    return next(name for name, known in DATATYPES.items() if known == dtype)

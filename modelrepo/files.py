"""Writes that never leave a half-written file: a temporary name in the same folder, renamed into place; and the
bytes of an uncompressed .npz."""

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: dict) -> bytes:
    """Each value as one array of an uncompressed .npz (strings as 0-d unicode arrays); never pickles."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()

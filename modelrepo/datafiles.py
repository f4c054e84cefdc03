"""Users' data files (.npy, .npz, .csv) read as rows of numbers, whole or in bounded chunks.

A .npy file is memory-mapped, so a chunk reads only its own rows; a .csv file is read line by line (one header
line is allowed); a .npz archive's array is read whole (name it with `key` when it holds several).
"""

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz", ".csv")


class DataFileError(ValueError):
    """A data file that cannot be used: missing, unreadable, of another type, empty or not numbers."""


class DataFile:
    """The rows of one file: len(file) of them, each an array of numbers; chunks(first, size) yields
    (index of the chunk's first row, rows (n, ...) float32) from row `first` on."""

    def __init__(self, path: Path, key: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFileError(f"{self.path}: no such file")
        self.suffix = self.path.suffix.lower()
        if self.suffix not in SUFFIXES:
            raise DataFileError(f"{self.path}: unsupported file type {self.suffix!r}; use .npy, .npz or .csv")
        try:
            if self.suffix == ".npy":
                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            elif self.suffix == ".npz":
                self._array = self._from_archive(key)
            else:
                self._array = None
                self._rows = sum(1 for _ in self._csv_lines())
        except DataFileError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise DataFileError(f"{self.path}: could not be read ({exc})") from None
        if self._array is not None:
            self._check(self._array)
            self._rows = len(self._array)
        if self._rows == 0:
            raise DataFileError(f"{self.path}: is empty (no rows)")

    def __len__(self) -> int:
        return self._rows

    def chunks(self, first: int = 0, size: int = 1024) -> Iterator[tuple[int, np.ndarray]]:
        if self._array is not None:
            for start in range(first, self._rows, size):
                yield start, self._as_rows(np.asarray(self._array[start : start + size]))
            return
        lines = islice(self._csv_lines(), first, None)
        start = first
        while block := list(islice(lines, size)):
            try:
                rows = np.loadtxt(block, delimiter=",", ndmin=2)
            except ValueError as exc:
                raise DataFileError(f"{self.path}: could not be read (rows {start + 1}-{start + len(block)}: {exc})") from None
            yield start, self._as_rows(rows)
            start += len(block)

    def read(self) -> np.ndarray:
        """Every row at once, float32."""
        return np.concatenate([rows for _, rows in self.chunks(0, max(self._rows, 1))])

    def _from_archive(self, key: str | None) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if key is None and len(names) != 1:
                raise DataFileError(f"{self.path}: holds arrays {names}; name one with --key")
            if key is not None and key not in names:
                raise DataFileError(f"{self.path}: no array {key!r}; it holds {names}")
            return archive[key or names[0]]

    def _csv_lines(self) -> Iterator[str]:
        """The data lines: blank lines skipped, and a first line that is not numbers (a header)."""
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if not line.strip():
                    continue
                if number == 0 and not _numeric(line):
                    continue
                yield line

    def _check(self, array: np.ndarray) -> None:
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise DataFileError(f"{self.path}: holds {array.dtype} values; numbers are needed")
        if array.ndim == 0:
            raise DataFileError(f"{self.path}: holds one number, not rows")

    def _as_rows(self, rows: np.ndarray) -> np.ndarray:
        self._check(rows)
        return (rows[:, None] if rows.ndim == 1 else rows).astype(np.float32)  # N scalar points: (N, 1)


def _numeric(line: str) -> bool:
    try:
        np.array(line.strip().split(","), dtype=np.float64)
    except ValueError:
        return False
    return True

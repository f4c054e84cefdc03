"""Data sets: the built-in 8x8 digits (continuous and binary) and the user's own files.

Protocol for the built-in sets (README, "Evaluation protocol"):
    X = load_digits().data; X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    digits:        x = (pixel + u) / 17, u ~ U(0, 1), fresh each epoch; test u from default_rng(0)
    digits-binary: x = (pixel >= 8)
    mnist-binary:  Burda et al. (2016), training/mnist.py: a fresh Bernoulli draw of each training image
                   every epoch; validation (the last 10,000 training images) and test binarised once
The validation split is carved from X_train (random_state 0) and never touches X_test; mnist-binary has its
own fixed validation rows. The calibration split (a version's reference.json, CONTRACT section 3) is carved from
the test rows, which neither training nor checkpoint selection sees: `calibration_split`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from modelrepo.datafiles import DataFile, DataFileError
from training.config import DataConfig, Likelihood
from training.mnist import binarize, binarized_mnist_splits

DIGITS_LEVELS = 17  # pixel values are the integers 0..16
BUILTIN = ("digits", "digits-binary", "mnist-binary")


class DataError(ValueError):
    """Data that cannot be used: unreadable, empty, non-finite or out of range."""


@dataclass(frozen=True)
class Dataset:
    name: str
    train: np.ndarray  # (N, *data_shape) float32, before dequantisation
    test: np.ndarray  # (M, *data_shape) float32, ready to score
    dequantize_levels: int | None = None  # when set, observe() adds U(0,1) noise and divides by this
    binarize: bool = False  # when set, train holds grey levels and observe() draws Bernoulli pixels from them
    validation: np.ndarray | None = None  # fixed validation rows, ready to score; else carved from train

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def observe(self, raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """What the model sees of `raw`: dequantised or binarised with noise from `rng`, or `raw` itself."""
        if self.binarize:
            return binarize(raw, rng)
        if self.dequantize_levels is None:
            return raw
        noise = rng.uniform(size=raw.shape)
        return ((raw + noise) / self.dequantize_levels).astype(np.float32)

    def split_validation(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(training rows before dequantisation, validation rows ready to score); fixed by random_state 0,
        or the dataset's own validation rows when it has them."""
        if self.validation is not None:
            return self.train, self.validation
        if len(self.train) < 4:
            raise DataError(f"{self.name}: {len(self.train)} training rows; at least 4 are needed")
        train_raw, val_raw = train_test_split(self.train, test_size=fraction, random_state=0)
        return train_raw, self.observe(val_raw, np.random.default_rng(1))


def perturb(x: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Ren et al. (2019)'s input perturbation for a background model: each value of x (N, *data_shape) replaced, with
    probability `rate` and independently of the others, by a random one: flipped (1 - x) where x is binary, else a
    uniform draw between the smallest and largest value of x."""
    chosen = rng.random(x.shape) < rate  # (N, *data_shape)
    if np.all((x == 0) | (x == 1)):
        replacement = 1 - x
    else:
        replacement = rng.uniform(x.min(), x.max(), size=x.shape)
    return np.where(chosen, replacement, x).astype(np.float32)


CALIBRATION_MAX = 1000  # calibration points at most; the rest of the test rows stay for evaluation


def calibration_split(test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration rows, evaluation rows, the calibration rows' indices into test): half of the test rows, at
    most CALIBRATION_MAX, drawn by a fixed permutation (default_rng(0)); the evaluation rows are the others, held
    out from the reference too, so that a validity check of its p-values sees points it never scored."""
    order = np.random.default_rng(0).permutation(len(test))  # (M,)
    count = min(len(test) // 2, CALIBRATION_MAX)
    chosen, rest = np.sort(order[:count]), np.sort(order[count:])
    return test[chosen], test[rest], chosen


def load_dataset(config: DataConfig, likelihood: Likelihood) -> Dataset:
    """Load and check the data named by `config` for a model with this likelihood."""
    if config.source in BUILTIN:
        dataset = _load_mnist_binary() if config.source == "mnist-binary" else _load_digits(config.source == "digits-binary")
        if config.data_shape is not None:
            reshape = lambda rows: None if rows is None else _reshape(rows, config.data_shape, dataset.name)
            dataset = dataclasses.replace(dataset, train=reshape(dataset.train), test=reshape(dataset.test),
                                          validation=reshape(dataset.validation))
    else:
        rows = _read_rows(Path(config.source), config.key, config.data_shape)
        if config.test_source is not None:
            test = _read_rows(Path(config.test_source), config.key, config.data_shape)
            if test.shape[1:] != rows.shape[1:]:
                raise DataError(f"{config.test_source}: rows of shape {test.shape[1:]}, training rows are {rows.shape[1:]}")
        else:
            rows, test = train_test_split(rows, test_size=0.25, random_state=0)
        dataset = Dataset(name=Path(config.source).stem, train=rows, test=test)
    check_values(dataset.train, likelihood, "training data")
    check_values(dataset.test, likelihood, "test data")
    return dataset


def check_values(x: np.ndarray, likelihood: Likelihood, what: str) -> None:
    if x.size == 0:
        raise DataError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise DataError(f"{what} has {bad} NaN or infinite values; remove or impute them")
    if likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{what} has values in [{x.min():g}, {x.max():g}]; a Bernoulli likelihood needs [0, 1] "
            "(binarise or rescale the data, or use --likelihood gaussian)"
        )


def _load_mnist_binary() -> Dataset:
    train_grey, validation, test = binarized_mnist_splits()  # (50000, 784), (10000, 784), (10000, 784)
    shape = (-1, 28, 28)
    return Dataset("mnist-binary", train_grey.reshape(shape), test.reshape(shape), binarize=True,
                   validation=validation.reshape(shape))


def _load_digits(binary: bool) -> Dataset:
    from sklearn.datasets import load_digits

    pixels = load_digits().data
    pixels_train, pixels_test = train_test_split(pixels, test_size=0.25, random_state=0)
    if binary:
        return Dataset(
            name="digits-binary",
            train=(pixels_train >= 8).astype(np.float32),
            test=(pixels_test >= 8).astype(np.float32),
        )
    noise = np.random.default_rng(0).uniform(size=pixels_test.shape)
    return Dataset(
        name="digits",
        train=pixels_train.astype(np.float32),
        test=((pixels_test + noise) / DIGITS_LEVELS).astype(np.float32),
        dequantize_levels=DIGITS_LEVELS,
    )


def _read_rows(path: Path, key: str | None, data_shape: tuple[int, ...] | None) -> np.ndarray:
    """(N, *data_shape) float32 from a .npy, .npz or .csv file (modelrepo.datafiles, as the service reads them)."""
    try:
        array = DataFile(path, key).read()
    except DataFileError as exc:
        raise DataError(str(exc)) from None
    if data_shape is not None:
        array = _reshape(array, data_shape, str(path))
    return array


def _reshape(rows: np.ndarray, data_shape: tuple[int, ...], where: str) -> np.ndarray:
    per_row = int(np.prod(rows.shape[1:]))
    if per_row != int(np.prod(data_shape)):
        raise DataError(f"{where}: rows have {per_row} values, which cannot take data shape {list(data_shape)}")
    return rows.reshape(len(rows), *data_shape)

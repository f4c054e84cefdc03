"""Data loading: the built-in protocol, the user's files, and clear errors for unusable data."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from training.config import DataConfig
from training.data import DataError, load_dataset


def test_digits_follow_the_protocol():
    dataset = load_dataset(DataConfig("digits"), "gaussian")
    _, pixels_test = train_test_split(load_digits().data, test_size=0.25, random_state=0)
    expected = (pixels_test + np.random.default_rng(0).uniform(size=pixels_test.shape)) / 17
    np.testing.assert_allclose(dataset.test, expected, rtol=1e-6)
    assert dataset.train.shape == (1347, 64) and dataset.train.max() == 16  # raw pixels, dequantised per epoch
    first = dataset.observe(dataset.train, np.random.default_rng(1))
    second = dataset.observe(dataset.train, np.random.default_rng(2))
    assert 0 < first.min() and first.max() < 1 and not np.allclose(first, second)
    assert np.all(np.floor(first * 17) == dataset.train)  # noise stays inside each pixel's bin


def test_digits_binary_is_thresholded_at_eight():
    dataset = load_dataset(DataConfig("digits-binary"), "bernoulli")
    _, pixels_test = train_test_split(load_digits().data, test_size=0.25, random_state=0)
    np.testing.assert_array_equal(dataset.test, (pixels_test >= 8).astype(np.float32))


def test_validation_split_is_carved_from_training_rows_only():
    dataset = load_dataset(DataConfig("digits-binary"), "bernoulli")
    train, val = dataset.split_validation(0.1)
    assert len(train) + len(val) == len(dataset.train) and len(val) == 135


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_user_files_of_any_shape(tmp_path, suffix):
    rows = np.random.default_rng(0).uniform(size=(40, 1, 2, 3)).astype(np.float32)
    path = tmp_path / f"data{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".npz":
        np.savez(path, x=rows)
    else:
        np.savetxt(path, rows.reshape(40, -1), delimiter=",", header="a,b,c,d,e,f", comments="")
    shape = (1, 2, 3) if suffix == ".csv" else None
    dataset = load_dataset(DataConfig(str(path), data_shape=shape), "bernoulli")
    assert dataset.data_shape == (1, 2, 3) and len(dataset.train) == 30 and len(dataset.test) == 10


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    "name, content, likelihood, message",
    [
        ("gone.npy", None, "gaussian", "no such file"),
        ("bad.npy", b"not numpy at all", "gaussian", "could not be read"),
        ("bad.csv", b"1,2\nx,y\n3,4\n", "gaussian", "could not be read"),
        ("data.parquet", b"PAR1", "gaussian", "unsupported file type"),
        ("nan.npy", np.array([[0.1, np.nan]] * 8), "gaussian", "NaN or infinite"),
        ("inf.npy", np.array([[0.1, np.inf]] * 8), "gaussian", "NaN or infinite"),
        ("range.npy", np.array([[0.0, 2.0]] * 8), "bernoulli", r"Bernoulli likelihood needs \[0, 1\]"),
        ("empty.npy", np.zeros((0, 4)), "gaussian", "empty"),
        ("text.npy", np.array([["a", "b"]] * 8), "gaussian", "numbers are needed"),
    ],
)
def test_unusable_data_is_refused_with_a_clear_message(tmp_path, name, content, likelihood, message):
    path = str(tmp_path / name) if content is None else _write(tmp_path, name, content)
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(path), likelihood)


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((8, 2)), b=np.ones((8, 2)))
    with pytest.raises(DataError, match="name one with --key"):
        load_dataset(DataConfig(str(path)), "gaussian")
    assert load_dataset(DataConfig(str(path), key="b"), "gaussian").train.min() == 1


def test_data_shape_that_does_not_fit_the_rows(tmp_path):
    path = _write(tmp_path, "rows.npy", np.zeros((8, 6)))
    with pytest.raises(DataError, match="cannot take data shape"):
        load_dataset(DataConfig(path, data_shape=(4,)), "gaussian")


def test_builtin_digits_as_images():
    dataset = load_dataset(DataConfig("digits-binary", data_shape=(1, 8, 8)), "bernoulli")
    flat = load_dataset(DataConfig("digits-binary"), "bernoulli")
    assert dataset.data_shape == (1, 8, 8)
    np.testing.assert_array_equal(dataset.test.reshape(len(dataset.test), -1), flat.test)
    with pytest.raises(DataError, match="cannot take data shape"):
        load_dataset(DataConfig("digits", data_shape=(7, 7)), "gaussian")

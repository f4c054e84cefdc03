"""Background models (training/background.py): inputs perturbed at rate mu, fresh each epoch, and the validation-only
pieces of the choice of mu."""

import dataclasses
import math

import numpy as np
import pytest

import training.train as train_module
from training.background import aurocs, image_shape, ratio_auroc, synthetic_ood
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import Dataset, perturb
from training.presets import PRESETS


def binomial_bound(n: int, p: float, sigmas: float = 5.0) -> float:
    return sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_binary_inputs_are_flipped_at_the_rate(rate):
    x = (np.random.default_rng(0).uniform(size=(300, 64)) < 0.3).astype(np.float32)
    out = perturb(x, rate, np.random.default_rng(1))
    changed = out != x
    assert abs(changed.sum() - x.size * rate) <= binomial_bound(x.size, rate)
    np.testing.assert_array_equal(out[changed], 1 - x[changed])  # a change is a flip
    assert set(np.unique(out)) <= {0.0, 1.0} and out.dtype == np.float32
    # Each position on its own: the flips spread over the rows and the pixels alike.
    per_pixel = changed.mean(0)
    assert abs(per_pixel.mean() - rate) < 0.02 and per_pixel.std() < 4 * math.sqrt(rate * (1 - rate) / len(x))


def test_continuous_inputs_are_replaced_within_their_range():
    x = np.random.default_rng(0).uniform(0.2, 0.7, size=(200, 50)).astype(np.float32)
    out = perturb(x, 0.2, np.random.default_rng(1))
    changed = out != x
    assert abs(changed.sum() - x.size * 0.2) <= binomial_bound(x.size, 0.2)
    assert out.min() >= x.min() and out.max() <= x.max()
    assert abs(np.corrcoef(out[changed], x[changed])[0, 1]) < 0.05  # replaced, not nudged


def test_rate_zero_changes_nothing():
    x = (np.random.default_rng(0).uniform(size=(20, 9)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(perturb(x, 0.0, np.random.default_rng(1)), x)


def test_training_perturbs_every_epoch_afresh_at_the_configured_rate(tmp_path, monkeypatch):
    rows = (np.random.default_rng(0).uniform(size=(200, 16)) < 0.4).astype(np.float32)
    dataset = Dataset("bits", rows, rows[:20])
    seen = []

    def recording(x, rate, rng):
        out = perturb(x, rate, rng)
        seen.append((rate, out != x))
        return out

    monkeypatch.setattr(train_module, "perturb", recording)
    config = ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    train_config = TrainConfig(epochs=3, eval_every=1, batch_size=64, perturbation=0.2)
    train_module.train(dataset, DataConfig("bits"), config, train_config, tmp_path / "run.pt", progress=False)
    assert [rate for rate, _ in seen] == [0.2, 0.2, 0.2]
    train_rows = seen[0][1].shape[0]  # 90% of the rows: the rest are validation
    for _, changed in seen:
        assert abs(changed.sum() - changed.size * 0.2) <= binomial_bound(changed.size, 0.2)
    assert train_rows == 180 and not np.array_equal(seen[0][1], seen[1][1])  # fresh flips each epoch
    seen.clear()
    unperturbed = dataclasses.replace(train_config, perturbation=0.0)
    train_module.train(dataset, DataConfig("bits"), config, unperturbed, tmp_path / "plain.pt", progress=False)
    assert seen == []


@pytest.mark.parametrize("background, base", [("digits-binary-background", "digits-binary"),
                                              ("mnist-binary-background", "mnist-binary")])
def test_a_background_preset_is_its_base_recipe_with_perturbed_inputs(background, base):
    preset, original = PRESETS[background], PRESETS[base]
    assert preset.data == original.data and preset.model == original.model
    assert 0 < preset.train.perturbation < 1 and original.train.perturbation == 0
    assert dataclasses.replace(preset.train, perturbation=0.0) == original.train
    assert f"probability {preset.train.perturbation:g}" in preset.description


def test_the_synthetic_ood_sets_keep_the_pixels_and_break_the_digits():
    x = (np.random.default_rng(0).uniform(size=(10, 64)) < 0.3).astype(np.float32)
    images = x.reshape(10, 8, 8)
    sets = synthetic_ood(x)
    assert image_shape((64,)) == (8, 8) and image_shape((28, 28)) == (28, 28)
    np.testing.assert_array_equal(sets["mirrored"].reshape(10, 8, 8), images[:, :, ::-1])
    np.testing.assert_array_equal(sets["upside_down"].reshape(10, 8, 8), images[:, ::-1])
    for name in ("mirrored", "upside_down"):
        np.testing.assert_array_equal(sets[name].sum(1), x.sum(1))
    chimeras = sets["chimeras"].reshape(10, 8, 8)
    np.testing.assert_array_equal(chimeras[3, :4], images[3, :4])
    np.testing.assert_array_equal(chimeras[3, 4:], images[2, 4:])  # another row's bottom half
    np.testing.assert_array_equal(chimeras[0, 4:], images[9, 4:])
    mnist = synthetic_ood(np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28))
    assert mnist["mirrored"][0, 0, 0] == 27 and mnist["chimeras"].shape == (2, 28, 28)
    with pytest.raises(ValueError, match="not an image"):
        image_shape((10,))


def test_ratio_auroc():
    assert ratio_auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert ratio_auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert ratio_auroc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    values = aurocs(np.array([3.0, 4.0]), {"a": np.array([1.0, 2.0]), "b": np.array([3.5, 5.0])})
    assert values == {"a": 1.0, "b": 0.25, "mean": 0.625}

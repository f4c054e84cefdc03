"""The anomaly study's parts (bench/anomaly/, issue 19): the out-of-distribution sets do what their names say, the
figures agree with hand computations and scipy, the one-class runner resumes, the study's sections of
docs/ANOMALY.md are rewritten in place, and the validity check scores a shipped model as /score would."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.anomaly import report
from bench.anomaly.data import LabelledMnist, held_out
from bench.anomaly.metrics import auroc, clopper_pearson, conformal_flag_range, fpr_at_tpr
from bench.anomaly.oneclass import OneClassConfig, finished_results, run_class, run_classes
from bench.anomaly.scores import ScoreCache
from bench.anomaly.transforms import (
    Observation,
    area_resize,
    as_images,
    flip_left_right,
    invert,
    ood_sets,
    rotate_90,
)
from bench.anomaly.validity import validity
from modelrepo.reference import write_reference
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.engine.repository import ModelRepository
from training.config import ModelConfig, TrainConfig
from training.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
BINARY_DIGITS = (RNG.uniform(size=(12, 64)) < 0.3).astype(np.float32)  # (N, 64): the digits' flat 8 x 8 rows
BINARY_MNIST = (RNG.uniform(size=(5, 28, 28)) < 0.15).astype(np.float32)  # (N, 28, 28)


# --- the out-of-distribution sets ------------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [BINARY_DIGITS, BINARY_MNIST, RNG.uniform(size=(4, 64)).astype(np.float32)])
def test_image_transforms_keep_shape_and_range_and_undo_themselves(rows):
    for transform in (invert, flip_left_right, rotate_90):
        out = transform(rows)
        assert out.shape == rows.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert not np.array_equal(out, rows)
    np.testing.assert_allclose(invert(invert(rows)), rows, atol=1e-7)  # exact for binary rows, rounding otherwise
    if set(np.unique(rows)) <= {0.0, 1.0}:
        np.testing.assert_array_equal(invert(invert(rows)), rows)
    np.testing.assert_array_equal(flip_left_right(flip_left_right(rows)), rows)
    turned = rows
    for _ in range(4):
        turned = rotate_90(turned)
    np.testing.assert_array_equal(turned, rows)


def test_inversion_swaps_ink_and_background_and_flips_and_turns_move_pixels_where_they_say():
    image = np.zeros((1, 8, 8), np.float32)
    image[0, 1, 0] = 1.0  # row 1, leftmost column
    flat = image.reshape(1, 64)
    assert invert(flat).sum() == 63 and invert(flat)[0, 8] == 0
    assert as_images(flip_left_right(flat))[0, 1, 7] == 1.0  # the same row, the rightmost column
    # A quarter turn anticlockwise takes (row, column) = (1, 0) to (7 - 0, 1) = (7, 1).
    assert as_images(rotate_90(flat))[0, 7, 1] == 1.0 and rotate_90(flat).sum() == 1


def test_as_images_refuses_points_that_are_not_square():
    with pytest.raises(ValueError, match="square"):
        as_images(np.zeros((2, 10)))


def test_area_resize_is_an_average_pool_for_whole_blocks_and_keeps_the_mean():
    images = RNG.uniform(size=(3, 28, 28))
    pooled = images.reshape(3, 7, 4, 7, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(area_resize(images, 7), pooled, rtol=1e-5)
    to_eight = area_resize(images, 8)
    assert to_eight.shape == (3, 8, 8)
    np.testing.assert_allclose(to_eight.mean(axis=(1, 2)), images.mean(axis=(1, 2)), rtol=1e-5)
    small = RNG.uniform(size=(2, 8, 8))
    up = area_resize(small, 28)
    assert up.shape == (2, 28, 28) and up.min() >= small.min() - 1e-6 and up.max() <= small.max() + 1e-6
    np.testing.assert_allclose(area_resize(np.full((1, 8, 8), 0.25), 28), 0.25, rtol=1e-6)


def test_observation_follows_each_data_set():
    grey = np.array([[0.0, 0.49, 0.5, 1.0]])
    threshold = Observation.of(Dataset("digits-binary", BINARY_DIGITS, BINARY_DIGITS))
    assert threshold.kind == "threshold"
    np.testing.assert_array_equal(threshold(grey, RNG), [[0, 0, 1, 1]])
    bernoulli = Observation.of(Dataset("mnist-binary", BINARY_MNIST, BINARY_MNIST, binarize=True))
    assert bernoulli.kind == "bernoulli"
    np.testing.assert_array_equal(bernoulli(np.array([[0.0, 1.0]]), RNG), [[0, 1]])
    assert abs(bernoulli(np.full((200, 100), 0.3), np.random.default_rng(1)).mean() - 0.3) < 0.01
    dequantise = Observation.of(Dataset("digits", BINARY_DIGITS, BINARY_DIGITS, dequantize_levels=17))
    assert dequantise.kind == "dequantise" and dequantise.continuous
    values = dequantise(np.full((50, 10), 0.5), np.random.default_rng(2))
    assert values.min() >= 8 / 17 and values.max() < 9 / 17  # pixel 8 of 0..16, plus U(0, 1), over 17


@pytest.mark.parametrize("kind", ["threshold", "bernoulli"])
def test_binary_models_get_binary_sets_of_the_right_size(kind):
    other = RNG.uniform(size=(7, 28, 28))
    sets = ood_sets(BINARY_DIGITS, Observation(kind), other, np.random.default_rng(0))
    assert "constant (all 0.5)" not in sets
    for name, points in sets.items():
        assert points.shape[1:] == BINARY_DIGITS.shape[1:]
        assert len(points) == (7 if name == "other data set" else len(BINARY_DIGITS))
        assert set(np.unique(points)) <= {0.0, 1.0}, name
    assert sets["blank (all 0)"].max() == 0 and sets["constant (all 1)"].min() == 1
    density_set = next(name for name in sets if name.startswith("Bernoulli noise"))
    assert f"{BINARY_DIGITS.mean():.2f}" in density_set


def test_continuous_sets_are_dequantised_like_the_digits():
    normal = ((np.floor(RNG.uniform(size=(10, 64)) * 17) + RNG.uniform(size=(10, 64))) / 17).astype(np.float32)
    sets = ood_sets(normal, Observation("dequantise", 17), RNG.uniform(size=(6, 28, 28)), np.random.default_rng(0))
    assert "constant (all 0.5)" in sets
    for name, points in sets.items():
        assert points.min() >= 0 and points.max() <= 1, name
    assert sets["blank (all 0)"].max() < 1 / 17 and sets["constant (all 1)"].min() >= 16 / 17
    assert len(np.unique(sets["blank (all 0)"])) > 1  # dequantisation noise, not an exact constant


# --- the figures -----------------------------------------------------------------------------------------------

def test_auroc_against_hand_counts():
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    # pairs (normal, anomalous): (1,2) 1, (1,3) 1, (2,2) a tie 1/2, (2,3) 1: 3.5 of 4
    assert auroc([1.0, 2.0], [2.0, 3.0]) == pytest.approx(0.875)


def test_fpr_at_95_tpr_against_hand_counts():
    normal, anomalous = [1.0, 2.0, 3.0, 4.0], [2.5, 3.5, 5.0, 6.0]
    # 95% of four anomalous points is all four: the threshold 2.5 also flags the normal 3 and 4
    assert fpr_at_tpr(normal, anomalous) == pytest.approx(0.5)
    assert fpr_at_tpr(normal, anomalous, tpr=0.75) == pytest.approx(0.25)  # threshold 3.5: flags the normal 4
    assert fpr_at_tpr(normal, anomalous, tpr=0.5) == 0.0  # threshold 5: no normal point
    assert fpr_at_tpr([0.0, 0.1], [0.5, 0.6]) == 0.0
    assert fpr_at_tpr([0.5, 0.6], [0.0, 0.1]) == 1.0


def test_clopper_pearson_is_the_beta_quantiles():
    low, high = clopper_pearson(3, 20)
    assert low == pytest.approx(stats.beta.ppf(0.025, 3, 18), rel=1e-6)
    assert high == pytest.approx(stats.beta.ppf(0.975, 4, 17), rel=1e-6)
    low, high = clopper_pearson(0, 225)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 225), rel=1e-6)


def test_the_flag_range_is_what_exchangeable_points_give():
    """Simulated references and new points, all exchangeable: the count flagged by the conformal p-value
    (modelrepo.reference.ConformalScores) falls in the predicted 95% range about 95% of the time, not far less."""
    from modelrepo.reference import ConformalScores

    n, points, fpr, rounds = 40, 30, 0.1, 2000
    rng = np.random.default_rng(5)
    inside = 0
    for _ in range(rounds):
        conformal = ConformalScores(rng.normal(size=n))
        flagged = int(np.sum(conformal.p_values(rng.normal(size=points)) <= fpr))
        low, high = conformal_flag_range(conformal.rank_for(fpr), n, points)
        inside += low <= flagged <= high
    assert 0.93 <= inside / rounds <= 1.0
    assert conformal_flag_range(0, 10, 30) == (0, 0)  # fpr below 1 / (n + 1): nothing can be flagged
    # A fixed flag probability of 0.3 instead (an invalid p-value): far outside the range of m / (n + 1) = 0.1
    low, high = conformal_flag_range(4, n - 1, 1000)
    assert high < 300


# --- the one-class runner --------------------------------------------------------------------------------------

def fake_result(digit: int, config: dict) -> dict:
    return {"digit": digit, "config": config, "seconds_training": 1.0, "seconds_scoring": 1.0,
            "scores": {"loglik": {"auroc": 0.9}, "reconstruction": {"auroc": 0.8}}}


def test_the_runner_skips_a_finished_digit_and_reruns_one_of_another_config(tmp_path):
    calls = []
    run_one = lambda digit: calls.append(digit) or fake_result(digit, {"epochs": 1})
    run_classes([3, 5], tmp_path, run_one, {"epochs": 1}, log=lambda _: None)
    assert calls == [3, 5]
    assert json.loads((tmp_path / "class-3" / "result.json").read_text())["digit"] == 3
    run_classes([3, 5, 7], tmp_path, run_one, {"epochs": 1}, log=lambda _: None)
    assert calls == [3, 5, 7]  # 3 and 5 read back, not run
    run_other = lambda digit: calls.append(digit) or fake_result(digit, {"epochs": 2})
    run_classes([3], tmp_path, run_other, {"epochs": 2}, log=lambda _: None)
    assert calls == [3, 5, 7, 3]
    assert sorted(finished_results(tmp_path, {"epochs": 1})) == [5, 7]


def test_the_runner_starts_nothing_once_its_budget_is_spent(tmp_path):
    calls = []
    run_classes([1, 2], tmp_path, lambda d: calls.append(d) or fake_result(d, {}), {}, budget_seconds=-1.0,
                log=lambda _: None)
    assert calls == [] and not list(tmp_path.glob("class-*/result.json"))


def tiny_mnist() -> LabelledMnist:
    """8 x 8 'images' of two kinds: digit 0 ink on the left half, digit 1 on the right."""
    rng = np.random.default_rng(3)

    def images(labels):
        grey = np.full((len(labels), 8, 8), 0.05, np.float32)
        grey[labels == 0, :, :4] = 0.9
        grey[labels == 1, :, 4:] = 0.9
        return grey

    train_labels, val_labels, test_labels = (np.arange(n) % 2 for n in (40, 10, 20))
    binary = lambda grey: (rng.uniform(size=grey.shape) < grey).astype(np.float32)
    return LabelledMnist(images(train_labels), train_labels, binary(images(val_labels)), val_labels,
                         binary(images(test_labels)), test_labels)


def test_a_tiny_real_run_is_written_and_then_skipped(tmp_path):
    config = OneClassConfig(ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(8,), likelihood="bernoulli"),
                            TrainConfig(epochs=1, batch_size=10, eval_every=1, eval_samples=4), k=4)
    data = tiny_mnist()
    calls = []

    def run_one(digit):
        calls.append(digit)
        return run_class(digit, tmp_path, data, config, progress=False)

    results = run_classes([0], tmp_path, run_one, config.describe(), log=lambda _: None)
    result = results[0]
    assert (result["n_train"], result["n_test_normal"], result["n_test_anomalous"]) == (20, 10, 10)
    assert 0.0 <= result["scores"]["loglik"]["auroc"] <= 1.0 and result["epochs"] == 1
    assert (tmp_path / "repository" / "mnist-class-0" / "1" / "manifest.json").exists()
    assert (tmp_path / "class-0" / "checkpoint.pt").exists()
    again = run_classes([0], tmp_path, run_one, config.describe(), log=lambda _: None)
    assert calls == [0] and again[0] == json.loads(json.dumps(result))


# --- the document ----------------------------------------------------------------------------------------------

def test_sections_are_replaced_in_place_and_writing_twice_changes_nothing(tmp_path):
    doc = tmp_path / "ANOMALY.md"
    doc.write_text((ROOT / "docs" / "ANOMALY.md").read_text().split("<!-- anomaly-")[0])  # the page before any table
    original = doc.read_text()
    report.write_section("anomaly-validity", "first table", doc)
    once = doc.read_text()
    assert once.startswith(original.rstrip()) and once.count("<!-- anomaly-validity:start -->") == 1
    report.write_section("anomaly-validity", "first table", doc)
    assert doc.read_text() == once
    report.write_section("anomaly-detection", "detection", doc)
    report.write_section("anomaly-validity", "second table", doc)
    text = doc.read_text()
    assert "second table" in text and "first table" not in text and "detection" in text
    assert text.index("anomaly-validity:start") < text.index("anomaly-detection:start")
    assert text.count("<!-- anomaly-validity:end -->") == 1


# --- validity on a shipped model -------------------------------------------------------------------------------

def test_validity_scores_the_evaluation_rows_against_the_reference_or_its_stand_in(tmp_path):
    shutil.copytree(ROOT / "models" / "digits-binary", tmp_path / "digits-binary")
    (tmp_path / "digits-binary" / "1" / "reference.json").unlink(missing_ok=True)
    options = EngineOptions(providers=["CPUExecutionProvider"], threads=1)
    cache = ScoreCache(tmp_path / "cache")
    stand_in = validity(ModelRepository.load(tmp_path, options), cache, log=lambda _: None)
    assert [r.fpr for r in stand_in] == [0.01, 0.05, 0.1]
    for row in stand_in:
        assert row.origin.startswith("made here") and row.reproduced is None
        assert (row.n_reference, row.n_evaluation, row.k) == (225, 225, 1000)  # 450 test rows, split in two
        assert row.bound <= row.fpr and row.low <= row.observed <= row.high
    assert [r.flagged for r in stand_in] == sorted(r.flagged for r in stand_in)
    # The same scores written as reference.json (as `python -m service reference` would): the same figures,
    # and the reference's scores are found again from the calibration rows.
    folder = tmp_path / "digits-binary" / "1"
    calibration = held_out(folder).calibration
    scores = ModelEngine.open(folder, options).loglik(calibration, 1000, 0)["loglik"]
    write_reference(folder, "loglik", 1000, 0, scores, "the calibration split")
    shipped = validity(ModelRepository.load(tmp_path, options), ScoreCache(None), log=lambda _: None)
    assert [r.flagged for r in shipped] == [r.flagged for r in stand_in]
    assert all(r.origin == "reference.json" and r.reproduced < 1e-9 for r in shipped)
    # Scores shifted up by a constant: every evaluation point falls below more reference points, so no fewer flagged
    write_reference(folder, "loglik", 1000, 0, scores + 5.0, "shifted")
    shifted = validity(ModelRepository.load(tmp_path, options), ScoreCache(None), log=lambda _: None)
    assert all(s.flagged >= r.flagged for s, r in zip(shifted, shipped)) and shifted[-1].flagged > shipped[-1].flagged
    assert shifted[0].reproduced == pytest.approx(5.0)

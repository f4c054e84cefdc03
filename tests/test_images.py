"""The manifest's image entry: what training writes for each data set, and what the shipped models carry."""

import json
import math

import pytest

from modelrepo import load_manifest
from service.settings import PROJECT_ROOT
from training.config import DataConfig
from training.images import image_entry


@pytest.mark.parametrize("source, data_shape, side", [("digits", (64,), 8), ("digits-binary", (64,), 8),
                                                       ("digits-binary", (1, 8, 8), 8), ("mnist-binary", (28, 28), 28)])
def test_the_built_in_sets_are_square_grey_pictures(source, data_shape, side):
    assert image_entry(DataConfig(source), data_shape) == {"height": side, "width": side, "channels": 1,
                                                           "range": [0.0, 1.0]}


def test_a_file_is_a_picture_only_when_told():
    assert image_entry(DataConfig("rows.npy"), (64,)) is None
    told = DataConfig("rows.npy", image_shape=(4, 2, 3), image_range=(0.0, 255.0))
    assert image_entry(told, (24,)) == {"height": 4, "width": 2, "channels": 3, "range": [0.0, 255.0]}
    with pytest.raises(ValueError, match=r"image shape \[4, 2, 3\] is 24 values, but a point of data shape \[25\]"):
        image_entry(told, (25,))


@pytest.mark.parametrize("bad", [dict(image_shape=(8,)), dict(image_shape=(8, 8, 2)), dict(image_shape=(0, 8)),
                                 dict(image_range=(1.0, 1.0)), dict(image_range=(0.0,))])
def test_a_wrong_image_setting_is_refused(bad):
    with pytest.raises(ValueError, match="image_"):
        DataConfig("rows.npy", **bad)


@pytest.mark.parametrize("folder", sorted(p.parent for p in (PROJECT_ROOT / "models").glob("*/*/manifest.json")))
def test_every_shipped_model_carries_the_image_of_its_data(folder):
    manifest = load_manifest(folder)
    recorded = json.loads((folder / "manifest.json").read_text())["image"]
    expected = image_entry(DataConfig(manifest.dataset["source"]), tuple(manifest.data_shape))
    assert recorded == expected and math.prod(manifest.data_shape) == expected["height"] * expected["width"]

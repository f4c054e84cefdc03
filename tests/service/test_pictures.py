"""Pictures and latent paths (CONTRACT section 4) against exact answers: the PNG's pixels are the contract's
formula applied to the JSON answer, the grid's geometry, 406 without an image shape; interpolation ends, the
linear midpoint, the slerp formula, and x equal to /decode of the returned z."""

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from tests.service.handmade import (
    LinearGaussian,
    OneDimensionalBernoulli,
    SmallAutoregressive,
    SmallCategorical,
    affine_graph,
    write_model,
)

PNG = {"accept": "image/png"}


def colour_model(root, data_shape=(12,), image=None, name="colour"):
    """A Gaussian decoder over 12 values (a 2 x 2 RGB image, or whatever `image` says), latent_dim 3."""
    rng = np.random.default_rng(1)
    size = math.prod(data_shape)
    encoder = affine_graph("x", data_shape, {"mu": (rng.normal(size=(size, 3)), np.zeros(3), (3,)),
                                             "logvar": (np.zeros((size, 3)), np.zeros(3), (3,))})
    decoder = affine_graph("z", (3,), {"mean": (rng.normal(scale=1.5, size=(3, size)), np.full(size, 0.2), data_shape),
                                       "logvar": (np.zeros((3, size)), np.zeros(size), data_shape)})
    return write_model(root, name, 1, data_shape, 3, "gaussian", encoder, decoder, image=image)


def formula(values, lo=0.0, hi=1.0):
    """The contract's pixel: round(255 (clip(v, lo, hi) - lo) / (hi - lo)), in float64, halves to even."""
    return np.array([round(255 * (min(max(v, lo), hi) - lo) / (hi - lo)) for v in np.ravel(values)]).reshape(
        np.shape(values))


def picture(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_sample_png_is_the_formula_on_the_json_answer_in_a_grid_of_ceil_sqrt_n_columns(tmp_path, make_client):
    model = OneDimensionalBernoulli()  # data_shape [1, 2, 3]: an implied 2 x 3 grey image
    model.write(tmp_path)
    client = make_client(tmp_path)
    for n in (1, 2, 4, 5, 10):
        body = {"model": "bern1d", "n": n, "seed": 3}
        x = np.array(client.post("/sample", json=body).json()["x"]).reshape(n, 2, 3)
        pixels = picture(client.post("/sample", json=body, headers=PNG))
        columns = math.ceil(math.sqrt(n))
        rows = math.ceil(n / columns)
        assert pixels.shape == (rows * 2, columns * 3)  # no borders, no scaling
        for i in range(rows * columns):
            row, column = divmod(i, columns)
            tile = pixels[row * 2:(row + 1) * 2, column * 3:(column + 1) * 3]
            expected = formula(x[i]) if i < n else np.zeros((2, 3))
            np.testing.assert_array_equal(tile, expected, err_msg=f"n={n}, image {i}")


def test_an_image_key_with_its_own_range_and_three_channels(tmp_path, make_client):
    colour_model(tmp_path, image={"height": 2, "width": 2, "channels": 3, "range": [-1, 2]})
    client = make_client(tmp_path)
    z = np.random.default_rng(0).normal(size=(3, 3))
    z[2] *= 10  # far out: values beyond the range, which the formula clips
    z = z.tolist()
    mean = np.array(client.post("/decode", json={"model": "colour", "z": z}).json()["mean"])  # (3, 12)
    pixels = picture(client.post("/decode", json={"model": "colour", "z": z}, headers=PNG))
    assert pixels.shape == (4, 4, 3)  # 2 columns, 2 rows of 2 x 2 RGB
    first = formula(mean[0].reshape(3, 2, 2), -1, 2).transpose(1, 2, 0)  # (channels, H, W) in C order
    np.testing.assert_array_equal(pixels[:2, :2], first)
    np.testing.assert_array_equal(pixels[2:, :2], formula(mean[2].reshape(3, 2, 2), -1, 2).transpose(1, 2, 0))
    np.testing.assert_array_equal(pixels[2:, 2:], 0)
    assert (mean[2] < -1).any() and (mean[2] > 2).any()  # so clipping was exercised


def test_a_model_without_an_image_shape_gets_406_naming_the_manifest_key(client):
    for path, body in (("/sample", {"model": "linear", "n": 2, "seed": 0}),
                       ("/decode", {"model": "linear", "z": [[0, 0, 0]]}),
                       ("/interpolate", {"model": "linear", "z": [[0, 0, 0], [1, 1, 1]]})):
        response = client.post(path, json=body, headers=PNG)
        assert response.status_code == 406, path
        assert '"image"' in response.json()["detail"] and "linear:2" in response.json()["detail"]
        assert client.post(path, json=body).status_code == 200  # JSON still serves


@pytest.mark.parametrize("image, problem", [
    ({"height": 3, "width": 3, "channels": 1}, "prod(data_shape) = 12"),
    ({"height": 2, "width": 2, "channels": 2}, "channels"),
    ({"height": 2, "width": 6, "range": [1, 1]}, "lo < hi"),
])
def test_an_image_key_that_does_not_fit_keeps_the_version_out_with_the_reason(tmp_path, make_client, image, problem):
    colour_model(tmp_path, image=image)
    LinearGaussian().write(tmp_path)
    report = make_client(tmp_path).get("/models/colour").json()["versions"][0]
    assert report["ready"] is False and problem in report["error"] and "image" in report["error"]


def test_autoregressive_decode_png_shows_the_drawn_x(tmp_path, make_client):
    SmallAutoregressive(data_shape=(2, 3)).write(tmp_path)
    client = make_client(tmp_path)
    body = {"model": "ar", "z": [[0.3], [-1.0]], "seed": 5}
    drawn = np.array(client.post("/decode", json=body).json()["x"])
    np.testing.assert_array_equal(picture(client.post("/decode", json=body, headers=PNG)),
                                  np.concatenate([formula(drawn[0]), formula(drawn[1])], axis=1))


def slerp(a, b, t):
    theta = math.acos(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)


def test_interpolation_between_two_points_runs_between_their_encoder_means(client):
    x = np.random.default_rng(2).normal(size=(2, 5)).tolist()
    means = np.array(client.post("/encode", json={"model": "linear", "x": x}).json()["mu"])
    answer = client.post("/interpolate", json={"model": "linear", "x": x, "steps": 3}).json()
    z = np.array(answer["z"])
    assert answer["model"] == "linear:2" and z.shape == (3, 3)
    np.testing.assert_array_equal(z[0], means[0])
    np.testing.assert_allclose(z[-1], means[1], rtol=1e-6)
    np.testing.assert_allclose(z[1], (means[0] + means[1]) / 2, rtol=1e-6)  # the linear midpoint
    decoded = client.post("/decode", json={"model": "linear", "z": answer["z"]}).json()["mean"]
    assert answer["x"] == decoded  # exactly what /decode answers for that z


def test_the_spherical_path_is_the_slerp_formula_and_keeps_equal_norms(client):
    a, b = np.array([1.0, 2.0, -0.5]), np.array([-2.0, 0.5, 1.0])
    b = b / np.linalg.norm(b) * np.linalg.norm(a)  # equal norms
    answer = client.post("/interpolate", json={"model": "linear", "z": [a.tolist(), b.tolist()], "steps": 9,
                                               "path": "spherical"}).json()
    z = np.array(answer["z"])
    for i, point in enumerate(z):
        np.testing.assert_allclose(point, slerp(a, b, i / 8), rtol=1e-6, atol=1e-6)
        assert abs(np.linalg.norm(point) - np.linalg.norm(a)) < 1e-5
    linear = np.array(client.post("/interpolate", json={"model": "linear", "z": [a.tolist(), b.tolist()],
                                                        "steps": 9}).json()["z"])
    assert np.linalg.norm(linear[4]) < np.linalg.norm(a) - 0.1  # the chord dips inside the sphere; slerp does not
    # theta = 0 (the same direction) or pi (opposite): the path is the linear one
    for other in (2 * a, -a):
        spherical = client.post("/interpolate", json={"model": "linear", "z": [a.tolist(), other.tolist()],
                                                      "steps": 5, "path": "spherical"}).json()["z"]
        np.testing.assert_allclose(spherical, [(1 - t) * a + t * other for t in np.linspace(0, 1, 5)], atol=1e-6)


def test_interpolate_png_is_the_decoded_path(tmp_path, make_client):
    OneDimensionalBernoulli().write(tmp_path)
    client = make_client(tmp_path)
    body = {"model": "bern1d", "z": [[-1.0], [2.0]], "steps": 4}
    x = np.array(client.post("/interpolate", json=body).json()["x"]).reshape(4, 2, 3)
    pixels = picture(client.post("/interpolate", json=body, headers=PNG))
    assert pixels.shape == (4, 6)
    np.testing.assert_array_equal(pixels[2:, 3:], formula(x[3]))


@pytest.mark.parametrize("body, field", [
    ({"z": [[0, 0, 0], [1, 1, 1]], "steps": 1}, "steps"),
    ({"z": [[0, 0, 0], [1, 1, 1]], "steps": 257}, "steps"),
    ({"z": [[0, 0, 0], [1, 1, 1]], "path": "cubic"}, "path"),
    ({"z": [[0, 0, 0]]}, "z"),
    ({"x": [[0.0] * 5] * 3}, "x"),
    ({"z": [[0, 0, 0], [1, 1, 1]], "x": [[0.0] * 5] * 2}, "x, z"),
    ({}, "x, z"),
    ({"z": [[0, 0], [1, 1]]}, "z"),
])
def test_interpolate_validates_its_fields(client, body, field):
    response = client.post("/interpolate", json={"model": "linear", **body})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_categorical_latents_are_refused_with_the_reason(tmp_path, make_client):
    SmallCategorical().write(tmp_path)
    response = make_client(tmp_path).post("/interpolate", json={"model": "cat", "x": [[1, 0, 1, 0], [0, 1, 0, 1]]})
    assert response.status_code == 422 and "categorical latents" in response.json()["detail"]


def test_the_png_answer_is_served_from_the_cache_like_the_json_one(tmp_path, make_client):
    OneDimensionalBernoulli().write(tmp_path)
    client = make_client(tmp_path)
    body = {"model": "bern1d", "n": 6, "seed": 11}
    first = client.post("/sample", json=body, headers=PNG).content
    hits = lambda: sum(float(line.split()[-1]) for line in client.get("/metrics").text.splitlines()
                       if line.startswith('vae_cache_hits_total{operation="sample"}'))
    before = hits()
    assert client.post("/sample", json=body, headers=PNG).content == first
    assert hits() == before + 1
    json.loads(client.post("/sample", json=body).text)  # the same entry answers JSON too
    assert hits() == before + 2

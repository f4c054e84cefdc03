"""GET /explore in a real browser against a real server (`python -m service` in a subprocess): every view shows
what the public API answers for the request it made, pixel for pixel; the controls change what is shown; the page
asks nothing of another host; with VAE_API_KEYS the key prompt lets the right key in, never into a URL."""

import httpx
import numpy as np
import pytest
from PIL import Image

from modelrepo.manifest import Image as ImageLayout
from modelrepo.pictures import pixels
from tests.browser.conftest import KEY
from tests.browser.explorable import NO_REFERENCE_MODEL, NUMBERS_MODEL
from tests.browser.pages import Explorer, api_json, api_png, grey, grid_tiles

DIGITS = ImageLayout(height=8, width=8)


@pytest.fixture
def explorer(browser, open_server):
    tab = Explorer.open(browser, open_server.url)
    tab.wait_quiet()
    yield tab
    tab.close()


def own_host(server) -> str:
    return f"127.0.0.1:{server.port}"


def test_every_view_loads_with_no_console_error_and_no_request_to_another_host(explorer, open_server):
    page = explorer.page
    assert page.locator("#model").input_value() == "digits-binary:1"  # the service's default model
    for view in ("samples", "points", "interpolation", "map", "anomaly"):
        assert page.locator(f"#{view} .status.problem, #{view} .status.refusal").count() == 0, explorer.status(view)
    assert explorer.unexpected_console_errors() == []
    assert explorer.hosts() == {own_host(open_server)}
    called = {sent.url.split("?")[0].rsplit("/", 1)[1] for sent in explorer.requests if sent.method == "POST"}
    assert called == {"sample", "encode", "decode", "interpolate", "score"}


def test_the_sample_grid_is_the_services_png_and_a_new_seed_changes_it(explorer, open_server):
    def shown_and_expected():
        body = explorer.request_of("#samples .sample-grid")
        tiles = [grey(tile) for tile in explorer.canvas_pixels("#samples canvas")]
        expected = grid_tiles(api_png(open_server.url, "sample", body), body["n"], 8, 8)
        return body, tiles, expected

    body, tiles, expected = shown_and_expected()
    assert body == {"model": "digits-binary:1", "n": 16, "seed": 0, "temperature": 1, "mode": "mean"}
    assert len(tiles) == 16 and all(tile.shape == (8, 8) for tile in tiles)
    np.testing.assert_array_equal(np.stack(tiles), np.stack(expected))
    assert np.stack(tiles).std() > 10  # pictures, not a blank

    explorer.change("sample-seed", "7")
    explorer.wait_quiet()
    new_body, new_tiles, new_expected = shown_and_expected()
    assert new_body["seed"] == 7
    np.testing.assert_array_equal(np.stack(new_tiles), np.stack(new_expected))
    assert not np.array_equal(np.stack(new_tiles), np.stack(tiles))

    explorer.change("sample-n", "5")
    explorer.change("sample-mode", "sample")
    explorer.change("sample-temperature", "0.5")
    explorer.wait_quiet()
    body, tiles, expected = shown_and_expected()
    assert (body["n"], body["mode"], body["temperature"]) == (5, "sample", 0.5)
    assert len(tiles) == 5
    np.testing.assert_array_equal(np.stack(tiles), np.stack(expected))
    assert set(np.unique(np.stack(tiles))) <= {0, 255}  # draws of a Bernoulli: black or white


def test_points_are_the_models_draws_beside_the_decoded_means_of_their_encodings(explorer, open_server):
    draws = api_json(open_server.url, "sample", {"model": "digits-binary:1", "n": 32, "seed": 1, "mode": "sample"})
    x = np.array(draws["x"], np.float32)  # (32, 64)
    shown = [grey(c) for c in explorer.canvas_pixels("#points figure canvas")]
    assert len(shown) == 64  # each point over its reconstruction
    points, reconstructions = shown[0::2], shown[1::2]
    np.testing.assert_array_equal(np.stack(points), pixels(x, DIGITS)[..., 0])
    mu = api_json(open_server.url, "encode", {"model": "digits-binary:1", "x": x.tolist()})["mu"]
    decoded = api_png(open_server.url, "decode", {"model": "digits-binary:1", "z": mu})
    np.testing.assert_array_equal(np.stack(reconstructions), np.stack(grid_tiles(decoded, 32, 8, 8)))

    explorer.change("points-seed", "2")
    explorer.wait_quiet()
    redrawn = [grey(c) for c in explorer.canvas_pixels("#points figure canvas")][0::2]
    x2 = api_json(open_server.url, "sample", {"model": "digits-binary:1", "n": 32, "seed": 2, "mode": "sample"})["x"]
    np.testing.assert_array_equal(np.stack(redrawn), pixels(np.array(x2, np.float32), DIGITS)[..., 0])


def test_the_interpolation_strip_is_the_services_path_and_follows_its_controls(explorer, open_server):
    body = explorer.request_of("#interpolation .strip")
    assert (body["steps"], body["path"]) == (10, "linear")
    strip = [grey(c) for c in explorer.canvas_pixels("#interpolation canvas")]
    expected = grid_tiles(api_png(open_server.url, "interpolate", body), 10, 8, 8)
    np.testing.assert_array_equal(np.stack(strip), np.stack(expected))

    explorer.change("interp-path", "spherical")
    explorer.change("interp-steps", "6")
    explorer.change("interp-to", "5")
    explorer.wait_quiet()
    body = explorer.request_of("#interpolation .strip")
    assert (body["steps"], body["path"]) == (6, "spherical")
    points = api_json(open_server.url, "sample", {"model": "digits-binary:1", "n": 32, "seed": 1, "mode": "sample"})
    assert body["x"] == [points["x"][0], points["x"][5]]
    strip = [grey(c) for c in explorer.canvas_pixels("#interpolation canvas")]
    np.testing.assert_array_equal(np.stack(strip), np.stack(grid_tiles(api_png(open_server.url, "interpolate", body),
                                                                       6, 8, 8)))


def test_a_click_on_the_map_decodes_the_latent_there_in_the_plane_of_the_first_two_components(explorer, open_server):
    explorer.page.locator("#map canvas").click(position={"x": 20, "y": 25})  # a corner: no point there
    explorer.page.wait_for_selector("#map .decoded figure canvas")
    explorer.wait_quiet()
    body = explorer.request_of("#map .decoded")
    shown = grey(explorer.canvas_pixels("#map .decoded canvas")[0])
    np.testing.assert_array_equal(shown, api_png(open_server.url, "decode", body))

    # The decoded latent is the mean of the points' encoder means plus a point of the plane of their first two
    # principal components (NumPy's, here): what is left outside that plane is nothing
    draws = api_json(open_server.url, "sample", {"model": "digits-binary:1", "n": 32, "seed": 1, "mode": "sample"})
    mu = np.array(api_json(open_server.url, "encode", {"model": "digits-binary:1", "x": draws["x"]})["mu"])
    centred = mu - mu.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred / len(mu))
    plane = vectors[:, -2:]  # (D, 2)
    offset = np.array(body["z"][0]) - mu.mean(0)
    assert np.linalg.norm(offset - plane @ (plane.T @ offset)) < 1e-3 * np.linalg.norm(offset)
    assert np.linalg.norm(offset) > 0.5  # a corner of the map is well away from the mean

    explorer.page.locator("#map .decoded button").click()  # use it as a point: a 33rd, chosen
    explorer.page.wait_for_function("() => document.querySelectorAll('#points figure').length === 33")
    explorer.wait_quiet()
    assert explorer.page.locator("#anomaly-point").input_value() == "32"


def test_the_anomaly_view_shows_the_services_score_and_its_feature_scores_over_the_point(explorer, open_server):
    explorer.page.locator("#points figure[data-index='3']").click()  # choose point #3
    explorer.wait_quiet()
    body = explorer.request_of("#anomaly .output")
    points = api_json(open_server.url, "sample", {"model": "digits-binary:1", "n": 32, "seed": 1, "mode": "sample"})
    assert body == {"model": "digits-binary:1", "x": [points["x"][3]], "fpr": 0.01, "features": True}
    answer = api_json(open_server.url, "score", body)
    text = explorer.page.locator("#anomaly table.score").inner_text()
    assert f"{answer['p_value'][0]:.4f}" in text and f"{answer['loglik'][0]:.2f}" in text
    assert f"{answer['threshold']:.2f}" in text and answer["reference"]["data"] in text
    verdict = "an outlier at fpr 0.01" if answer["is_outlier"][0] else "not an outlier at fpr 0.01"
    assert explorer.page.locator("#anomaly .badge").inner_text() == verdict

    point, heat, overlay = explorer.canvas_pixels("#anomaly .tiles canvas")
    np.testing.assert_array_equal(grey(point), pixels(np.array([points["x"][3]], np.float32), DIGITS)[0, ..., 0])
    features = np.array(answer["feature_scores"][0]).reshape(8, 8)
    brightness = heat[..., :3].astype(int).sum(-1)  # the colour scale runs from dark to light
    assert np.unravel_index(brightness.argmax(), (8, 8)) == np.unravel_index(features.argmax(), (8, 8))
    in_order = brightness.ravel()[features.ravel().argsort()]
    assert (np.diff(in_order) >= -3).all()  # lighter where the score is higher (up to the channels' rounding)
    assert overlay.shape == heat.shape and not np.array_equal(overlay, heat)

    explorer.change("anomaly-fpr", "0.5")
    explorer.wait_quiet()
    assert explorer.request_of("#anomaly .output")["fpr"] == 0.5


def test_a_model_without_a_reference_or_gaussian_latents_shows_the_services_reasons(explorer, open_server):
    explorer.choose_model(f"{NO_REFERENCE_MODEL}:1")
    refused = []
    for path, body in (("score", {"x": [[0.0] * 64], "features": True}), ("interpolate", {"x": [[0.0] * 64] * 2})):
        response = httpx.post(f"{open_server.url}/{path}", json={"model": f"{NO_REFERENCE_MODEL}:1", **body})
        refused.append((response.status_code, response.json()["detail"]))
    assert refused[0][0] == 409 and refused[1][0] == 422
    assert explorer.status("anomaly") == f"The service answered 409: {refused[0][1]}"
    assert explorer.status("interpolation") == f"The service answered 422: {refused[1][1]}"
    assert explorer.page.locator("#map canvas").count() == 1  # the other views still work
    assert explorer.unexpected_console_errors(409, 422) == []


def test_a_model_that_is_not_an_image_is_shown_as_plots_and_tables(explorer, open_server):
    explorer.choose_model(f"{NUMBERS_MODEL}:1")
    page = explorer.page
    assert page.locator("main canvas:not(.map):not(.legend)").count() == 0  # no pictures
    assert page.locator("#samples svg.plot").count() == 16
    draws = api_json(open_server.url, "sample", {"model": f"{NUMBERS_MODEL}:1", "n": 16, "seed": 0, "mode": "mean"})
    first_row = page.locator("#samples table.numbers tbody tr").first.locator("td").all_text_contents()
    np.testing.assert_allclose([float(v) for v in first_row], draws["x"][0], rtol=1e-3, atol=1e-4)
    assert page.locator("#points svg.plot").count() == 32
    assert page.locator("#interpolation svg.plot").count() == 10
    assert page.locator("#anomaly svg.plot rect.bar").count() == 64
    assert page.locator("#anomaly .badge").count() == 1
    for view in ("samples", "points", "interpolation", "map", "anomaly"):
        assert page.locator(f"#{view} .status.problem, #{view} .status.refusal").count() == 0, explorer.status(view)
    assert explorer.unexpected_console_errors() == []


def test_mnist_is_an_image_by_its_data_shape(explorer, open_server):
    explorer.choose_model("mnist-binary:1")
    tiles = explorer.canvas_pixels("#samples canvas")
    assert len(tiles) == 16 and tiles[0].shape == (28, 28, 4)
    body = explorer.request_of("#samples .sample-grid")
    expected = grid_tiles(api_png(open_server.url, "sample", body), 16, 28, 28)
    np.testing.assert_array_equal(np.stack([grey(t) for t in tiles]), np.stack(expected))


def test_dropped_files_become_the_points(explorer, open_server, tmp_path):
    rng = np.random.default_rng(0)
    batch = (rng.uniform(size=(3, 8, 8)) > 0.6).astype(np.float64)
    np.save(tmp_path / "three.npy", batch)
    explorer.page.locator("#points-file").set_input_files(str(tmp_path / "three.npy"))
    explorer.page.wait_for_function("() => document.querySelectorAll('#points figure').length === 3")
    explorer.wait_quiet()
    shown = [grey(c) for c in explorer.canvas_pixels("#points figure canvas")][0::2]
    np.testing.assert_array_equal(np.stack(shown), pixels(batch.reshape(3, 64), DIGITS)[..., 0])
    assert "three.npy" in explorer.status("points")
    assert explorer.request_of("#anomaly .output")["x"] == [batch[0].ravel().tolist()]

    ring = np.zeros((8, 8), np.uint8)
    ring[1:7, 1:7] = 255
    ring[2:6, 2:6] = 0
    Image.fromarray(ring).save(tmp_path / "ring.png")
    explorer.page.locator("#points-file").set_input_files(str(tmp_path / "ring.png"))
    explorer.page.wait_for_function("() => document.querySelectorAll('#points figure').length === 1")
    explorer.wait_quiet()
    np.testing.assert_array_equal(grey(explorer.canvas_pixels("#points figure canvas")[0]), ring)
    assert explorer.unexpected_console_errors() == []


def test_the_key_prompt_lets_the_right_key_in_and_never_puts_it_in_a_url(browser, keyed_server):
    tab = Explorer.open(browser, keyed_server.url)
    try:
        page = tab.page
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.locator("#views").is_hidden()
        page.locator("#key").fill("not-the-key")
        page.locator("#key-form button[type=submit]").click()
        page.wait_for_selector("#key-error:not([hidden])")
        assert "not valid" in page.locator("#key-error").inner_text()
        assert page.locator("#views").is_hidden()

        page.locator("#key").fill(KEY)
        page.locator("#key-form button[type=submit]").click()
        tab.wait_quiet()
        assert page.locator("#key-form").is_hidden() and page.locator("#key-state").is_visible()
        assert tab.canvas_pixels("#samples canvas")[0].shape == (8, 8, 4)
        assert tab.unexpected_console_errors(401) == []
        assert tab.hosts() == {own_host(keyed_server)}
        for sent in tab.requests:
            assert KEY not in sent.url and "not-the-key" not in sent.url
        data_calls = [sent for sent in tab.requests if sent.method == "POST"]
        assert data_calls and all(sent.headers.get("authorization") == f"Bearer {KEY}" for sent in data_calls)
        assert "#model=digits-binary" in page.url and KEY not in page.url

        page.locator("#forget-key").click()  # and back to the prompt
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        tab.close()


def test_the_page_is_public_and_its_data_is_not(keyed_server):
    assert httpx.get(f"{keyed_server.url}/explore").status_code == 200
    assert httpx.get(f"{keyed_server.url}/explore/main.js").status_code == 200
    assert httpx.get(f"{keyed_server.url}/models").status_code == 401
    assert httpx.get(f"{keyed_server.url}/explore", headers={"host": "rebinding.example"}).status_code == 400

"""GET /models and GET /models/{name} (service/http/routes/models.py), and the models shipped in models/."""

import numpy as np

from service.settings import PROJECT_ROOT
from tests.service.handmade import LinearGaussian, affine_graph, write_model


def test_models_lists_every_version_and_the_reason_a_version_failed(repository, make_client):
    write_model(repository, "broken", 1, (5,), 2, "gaussian", LinearGaussian().encoder, LinearGaussian().decoder)
    (repository / "linear" / "3").mkdir()  # a version folder without a manifest
    write_model(repository, "shape", 1, (5,), 3, "gaussian",  # encoder gives 2 latent dims, manifest says 3
                affine_graph("x", (5,), {"mu": (np.zeros((5, 2)), np.zeros(2), ("n",)),
                                         "logvar": (np.zeros((5, 2)), np.zeros(2), ("n",))}),
                LinearGaussian().decoder)
    client = make_client(repository)
    listing = client.get("/models").json()
    by_name = {m["name"]: m for m in listing["models"]}
    assert listing["default_model"] == "linear" and set(by_name) == {"bern1d", "broken", "linear", "shape"}
    linear = by_name["linear"]
    assert linear["default_version"] == 2
    assert [v["ready"] for v in linear["versions"]] == [True, True, False]
    assert "manifest.json: missing" in linear["versions"][2]["error"]
    assert linear["versions"][0]["provider"] == "CPUExecutionProvider"
    assert linear["versions"][0]["manifest"]["data_shape"] == [5]
    broken = by_name["broken"]  # on disk, but its manifest disagrees with its encoder: listed, never served
    assert broken["default_version"] is None and [v["ready"] for v in broken["versions"]] == [False]
    broken_error = broken["versions"][0]["error"]
    assert "encoder.onnx output 'mu': axis 1 is 3, expected 2" in broken_error
    assert str(repository) not in broken_error  # named within the repository, not by the server's own paths
    unusable = client.post("/encode", json={"model": "broken", "x": [[0] * 5]})
    assert unusable.status_code == 503 and broken_error in unusable.json()["detail"]
    assert "expected [2, 3]" in by_name["shape"]["versions"][0]["error"]
    assert client.get("/models/linear").json() == linear
    assert client.get("/models/nothing").status_code == 404
    failed = client.post("/encode", json={"model": "shape", "x": [[0] * 5]})
    assert failed.status_code == 503 and "failed to load" in failed.json()["detail"]
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready" and "shape/1" in ready["failed"] and "linear/3" in ready["failed"]
    assert client.post("/encode", json={"model": "linear", "x": [[0] * 5]}).status_code == 200  # others serve


def test_shipped_models_serve_and_score_their_own_samples_sensibly(make_client):
    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    assert client.get("/health/ready").json()["models"] == [
        "digits:1", "digits-binary:1", "digits-binary-background:1", "digits-binary-discrete:1", "digits-binary-ratio:1",
        "digits-mog:1", "mnist-binary:1", "mnist-binary-background:1",
        "mnist-binary-ratio:1"]
    drawn = client.post("/sample", json={"model": "digits-binary", "n": 20, "seed": 0, "mode": "sample"}).json()
    own = client.post("/loglik", json={"model": "digits-binary", "x": drawn["x"], "k": 200}).json()
    noise = (np.random.default_rng(0).uniform(size=(20, 64)) < 0.5).astype(int).tolist()
    other = client.post("/loglik", json={"model": "digits-binary", "x": noise, "k": 200}).json()
    # Its own samples are far more likely than coin flips (64 log 2 = 44 nats is the coin flips' own model).
    assert np.mean(own["loglik"]) > np.mean(other["loglik"]) + 20
    assert client.post("/encode", json={"x": [[0.5] * 64]}).json()["model"] == "digits:1"


def test_shipped_richer_models_rescored_through_the_service_give_their_manifests_figures(make_client):
    """digits-binary-discrete: /loglik sums exactly over its 4096 configurations and gives the test split's
    exact figure; digits-mog: /loglik with its mixture prior lands within importance-sampling error."""
    from training.config import DataConfig
    from training.data import load_dataset

    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    for name, k, tolerance in (("digits-binary-discrete", 1000, 1e-3), ("digits-mog", 1000, 0.3)):
        manifest = client.get(f"/models/{name}").json()["versions"][0]["manifest"]
        test = load_dataset(DataConfig(manifest["dataset"]["source"]), manifest["likelihood"]["type"]).test
        answer = client.post("/loglik", json={"model": name, "x": test.tolist(), "k": k, "seed": 0}).json()
        assert answer["method"] == ("exact" if name == "digits-binary-discrete" else "importance")
        loglik = np.mean(answer["loglik"])
        if answer["method"] == "exact":
            assert answer["k"] == 4096
        else:  # k = 1000 sits a little below the K = 5000 figure, never above it by more than its noise
            assert loglik < manifest["metrics"]["test_loglik"] + 0.05
        assert abs(loglik - manifest["metrics"]["test_loglik"]) < tolerance


def test_shipped_mnist_model_serves_28x28_images(make_client):
    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    versions = client.get("/models/mnist-binary").json()["versions"]
    assert versions[0]["ready"] and versions[0]["manifest"]["data_shape"] == [28, 28]
    drawn = client.post("/sample", json={"model": "mnist-binary", "n": 8, "seed": 0, "mode": "sample"}).json()
    assert np.asarray(drawn["x"]).shape == (8, 28, 28)
    own = client.post("/loglik", json={"model": "mnist-binary", "x": drawn["x"], "k": 100}).json()
    noise = (np.random.default_rng(0).uniform(size=(8, 784)) < 0.13).astype(int).tolist()  # MNIST's ink share
    other = client.post("/loglik", json={"model": "mnist-binary", "x": noise, "k": 100}).json()
    # Its own samples score like test images (about -90 nats or better); scattered ink far below that.
    assert np.mean(own["loglik"]) > -150 and np.mean(other["loglik"]) < np.mean(own["loglik"]) - 100

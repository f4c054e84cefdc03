"""/score against exact answers (CONTRACT.md, section 3): the conformal formula, threshold and is_outlier by hand,
per-feature scores by closed form (linear-Gaussian), quadrature (one-dimensional latents, autoregressive too) and
enumeration (categorical latents), the likelihood ratio as the difference of two /loglik answers, uniform
p-values for exchangeable draws (KS), and every way a reference can be missing or malformed."""

import io
import json
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from tests.service.handmade import (
    LinearGaussian,
    LinearGaussianMixture,
    OneDimensionalBernoulli,
    SmallAutoregressive,
    SmallCategorical,
)
from tests.service.scoring_helpers import conformal_by_hand, write_reference
from tests.service.test_integrity import ADMIN_KEY, keyed, reload


def loglik(client, model, x, k=1000, seed=0):
    response = client.post("/loglik", json={"model": model, "x": np.asarray(x).tolist(), "k": k, "seed": seed})
    assert response.status_code == 200, response.text
    return response.json()


def score(client, model, x, **fields):
    response = client.post("/score", json={"model": model, "x": np.asarray(x).tolist(), **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_p_values_threshold_and_is_outlier_are_the_contracts_formulas(tmp_path, make_client):
    model = LinearGaussian()
    folder = model.write(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, model.data_dim)) * 1.5
    client = make_client(tmp_path)
    logliks = loglik(client, "linear", x, k=50, seed=3)["loglik"]
    # Reference scores around the points' own, two of them exactly equal to a point's score (ties count as <=)
    reference = list(rng.normal(np.mean(logliks), 3.0, size=37)) + [logliks[0], logliks[5]]
    write_reference(folder, reference, k=50, seed=3)
    client = make_client(tmp_path)
    for fpr in (0.025, 0.05, 0.1, 0.3, 0.5):
        answer = score(client, "linear", x, fpr=fpr)
        assert answer["loglik"] == logliks and answer["score"] == logliks  # /loglik's own numbers, same draws
        assert answer["reference"] == {"n": 39, "score": "loglik", "k": 50, "seed": 3,
                                       "data": "hand-written for a test", "background": None}
        assert answer["fpr"] == fpr and answer["method"] == "importance"
        for i, s in enumerate(logliks):
            p_value, is_outlier, threshold = conformal_by_hand(reference, s, fpr)
            assert answer["p_value"][i] == pytest.approx(p_value, abs=1e-15)
            assert answer["is_outlier"][i] is is_outlier
            assert answer["threshold"] == threshold
            assert is_outlier == (s < threshold)  # the threshold's meaning
    assert "feature_scores" not in answer and "background_loglik" not in answer


def test_get_score_answers_one_point_as_post_does(tmp_path, make_client):
    model = OneDimensionalBernoulli()
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-6, -2, 19), k=200, seed=1)
    client = make_client(tmp_path)
    point = [1, 0, 1, 1, 0, 0]
    posted = score(client, "bern1d", [point], fpr=0.1, features=True)
    got = client.get("/score", params={"model": "bern1d", "x": ",".join(map(str, point)), "fpr": 0.1,
                                       "features": "true"})
    assert got.status_code == 200, got.text
    got = got.json()
    for name in ("score", "p_value", "is_outlier", "loglik", "stderr", "feature_scores"):
        assert got[name] == posted[name][0], name
    assert got["threshold"] == posted["threshold"] and got["reference"] == posted["reference"]


def test_the_default_fpr_and_fprs_the_reference_cannot_support(tmp_path, make_client):
    folder = LinearGaussian().write(tmp_path)
    write_reference(folder, np.arange(9.0) - 20)  # n = 9: the smallest fpr is 1 / 10
    x = np.zeros((1, 5))
    answer = score(make_client(tmp_path, default_fpr=0.2), "linear", x)
    assert answer["fpr"] == 0.2 and answer["threshold"] == -19.0  # m = floor(0.2 * 10) = 2
    client = make_client(tmp_path)
    for fpr in (0.05, 0.0999):
        response = client.post("/score", json={"model": "linear", "x": x.tolist(), "fpr": fpr})
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith("fpr:") and "1 / (n + 1) = 0.1" in detail
    for fpr in (0, 1, -0.5, 1.5, "0.1"):
        response = client.post("/score", json={"model": "linear", "x": x.tolist(), "fpr": fpr})
        assert response.status_code == 422 and "fpr" in response.text, fpr
    assert client.get("/score", params={"model": "linear", "x": "0,0,0,0,0", "fpr": "nan"}).status_code == 422


def posterior_feature_scores(model: LinearGaussian, x: np.ndarray) -> np.ndarray:
    """E over p(z|x) of -log N(x_d; W_d z + b_d, s2), in closed form: the posterior is N(m, S)."""
    w, b, s2 = model.weight, model.bias, model.noise_var
    covariance = np.linalg.inv(np.eye(model.latent_dim) + w.T @ w / s2)  # (L, L)
    means = (x - b) @ w @ covariance / s2  # (N, L)
    residual = x - means @ w.T - b  # (N, D)
    spread = np.einsum("dl,lm,dm->d", w, covariance, w)  # (D,): W_d S W_d^T
    return 0.5 * math.log(2 * math.pi * s2) + (residual**2 + spread) / (2 * s2)


def test_feature_scores_match_the_linear_gaussian_closed_form(tmp_path, make_client):
    model = LinearGaussian(proposal_shift=0.4, proposal_widen=2.0)  # a poor proposal: the weights matter
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-15, -5, 99), k=100_000, seed=2)
    x = np.random.default_rng(4).normal(size=(6, model.data_dim))
    answer = score(make_client(tmp_path, max_k=100_000), "linear", x, features=True)
    features = np.array(answer["feature_scores"])
    exact = posterior_feature_scores(model, x)
    assert features.shape == (6, model.data_dim)
    # Monte Carlo error at k = 1e5 (measured over seeds: at most ~0.02 per element, ~0.003 on average)
    np.testing.assert_allclose(features, exact, rtol=0.01, atol=0.03)
    assert abs((features - exact).mean()) < 0.01
    # Under the prior instead of the posterior (the mistake of an unweighted average over the wrong draws), far off
    prior_mean = 0.5 * math.log(2 * math.pi * model.noise_var) + (
        (x - model.bias) ** 2 + (model.weight**2).sum(1)) / (2 * model.noise_var)
    assert np.abs(prior_mean - exact).max() > 0.5


def posterior_expectation(log_joint, elements, z_range=(-12, 12)):
    """E over p(z|x) of elements(z) (D,) for a one-dimensional latent: quadrature of p(x, z) elements / p(x)."""
    peak = max(log_joint(z) for z in np.linspace(*z_range, 481))
    weight = lambda z: math.exp(log_joint(z) - peak)
    total = integrate.quad(weight, *z_range, epsabs=1e-13, limit=400)[0]
    return np.array([integrate.quad(lambda z: weight(z) * elements(z)[d], *z_range, epsabs=1e-13, limit=400)[0]
                     for d in range(len(elements(0.0)))]) / total


def test_feature_scores_match_quadrature_for_a_one_dimensional_latent(tmp_path, make_client):
    model = OneDimensionalBernoulli()
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-6, -2, 199), k=100_000, seed=5)
    x = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], np.float64)
    answer = score(make_client(tmp_path, max_k=100_000), "bern1d", x.reshape(3, 1, 2, 3), features=True)
    features = np.array(answer["feature_scores"])
    assert features.shape == (3, 1, 2, 3)  # nested as data_shape
    for row, got in zip(x, features.reshape(3, -1)):
        def elements(z, row=row):
            logits = model.slope * z + model.offset
            return np.logaddexp(0.0, logits) - row * logits  # -log p(x_d | z)

        exact = posterior_expectation(lambda z: stats.norm.logpdf(z) - elements(z).sum(), elements)
        np.testing.assert_allclose(got, exact, rtol=0.01, atol=0.005)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_autoregressive_feature_scores_condition_on_the_earlier_positions(tmp_path, make_client, likelihood):
    model = SmallAutoregressive(likelihood=likelihood, data_shape=(4,))
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-8, -1, 199), k=10000, seed=6)
    rng = np.random.default_rng(7)
    x = (rng.random((3, 4)) < 0.5).astype(float) if likelihood == "bernoulli" else rng.normal(size=(3, 4))
    answer = score(make_client(tmp_path), "ar", x, features=True)
    for row, got in zip(x, np.array(answer["feature_scores"])):
        def elements(z, row=row):
            params = model.conditionals(np.array([[z]]), row[None])
            if likelihood == "bernoulli":
                logits = params["logits"][0]
                return np.logaddexp(0.0, logits) - row * logits
            mean, logvar = params["mean"][0], params["logvar"][0]
            return 0.5 * (math.log(2 * math.pi) + logvar + (row - mean) ** 2 * np.exp(-logvar))

        exact = posterior_expectation(lambda z: model.log_prior(z) - elements(z).sum(), elements)
        np.testing.assert_allclose(got, exact, rtol=0.01, atol=0.01)
        assert abs(got.sum() - exact.sum()) < 0.02


def test_enumerated_categorical_feature_scores_are_the_exact_posterior_expectation(tmp_path, make_client):
    import itertools

    model = SmallCategorical(prior_logits=[[0.3, -0.2, 0.5], [0.0, 1.0, -1.0]])
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-4, -1, 199))
    x = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float64)
    answer = score(make_client(tmp_path), "cat", x, features=True)
    assert answer["method"] == "exact"
    log_prior, groups = model.prior_log_probs(), np.arange(model.groups)
    for row, got in zip(x, np.array(answer["feature_scores"])):
        joints, elements = [], []
        for categories in itertools.product(range(model.categories), repeat=model.groups):
            z = np.zeros((model.groups, model.categories))
            z[groups, categories] = 1.0
            logits = z.reshape(-1) @ model.decoder_weight + model.decoder_bias
            nll = np.logaddexp(0.0, logits) - row * logits
            joints.append(-nll.sum() + log_prior[groups, categories].sum())
            elements.append(nll)
        posterior = np.exp(np.array(joints) - special.logsumexp(joints))
        np.testing.assert_allclose(got, posterior @ np.array(elements), rtol=1e-6, atol=1e-9)


def test_a_mixture_prior_model_scores_with_its_own_loglik(tmp_path, make_client):
    model = LinearGaussianMixture()
    folder = model.write(tmp_path)
    write_reference(folder, np.linspace(-14, -4, 49), k=300, seed=0)
    x = np.random.default_rng(2).normal(size=(4, model.data_dim))
    client = make_client(tmp_path)
    answer = score(client, "mog", x, fpr=0.1, features=True)
    assert answer["score"] == loglik(client, "mog", x, k=300)["loglik"]
    assert np.all(np.isfinite(answer["feature_scores"]))


def test_the_likelihood_ratio_is_the_difference_of_the_two_logliks(tmp_path, make_client):
    LinearGaussian(seed=11).write(tmp_path, "background", 1)
    folder = LinearGaussian(proposal_widen=1.5).write(tmp_path, "linear", 1)
    write_reference(folder, np.linspace(-3, 3, 39), k=400, seed=9, score="likelihood_ratio",
                    background="background:1")
    x = np.random.default_rng(3).normal(size=(5, 5))
    client = make_client(tmp_path)
    answer = score(client, "linear", x, fpr=0.05)
    own, background = loglik(client, "linear", x, 400, 9)["loglik"], loglik(client, "background", x, 400, 9)["loglik"]
    assert answer["loglik"] == own and answer["background_loglik"] == background
    assert answer["score"] == [a - b for a, b in zip(own, background)]
    assert answer["reference"]["background"] == "background:1" and answer["reference"]["score"] == "likelihood_ratio"


def exact_draws(model: LinearGaussian, n: int, rng: np.random.Generator) -> np.ndarray:
    """x ~ p(x) exactly: z ~ N(0, I), x = W z + b + N(0, s2 I)."""
    z = rng.standard_normal((n, model.latent_dim))
    return z @ model.weight.T + model.bias + math.sqrt(model.noise_var) * rng.standard_normal((n, model.data_dim))


def test_p_values_of_exchangeable_draws_are_uniform_and_a_wrong_reference_is_caught(tmp_path, make_client):
    model = LinearGaussian()
    folder = model.write(tmp_path)
    rng = np.random.default_rng(21)
    client = make_client(tmp_path, max_batch=4096)
    reference = loglik(client, "linear", exact_draws(model, 1500, rng), k=20, seed=0)["loglik"]
    write_reference(folder, reference, k=20, seed=0)
    client = make_client(tmp_path, max_batch=4096)
    fresh = exact_draws(model, 800, rng)
    p_values = np.array(score(client, "linear", fresh, fpr=0.05)["p_value"])
    assert stats.kstest(p_values, "uniform").pvalue > 0.001
    assert abs(np.mean(p_values <= 0.05) - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 800)
    # The same test fails a reference of points that are not exchangeable with the fresh ones (data scaled by 1.3)
    scaled = loglik(client, "linear", exact_draws(model, 1500, rng) * 1.3, k=20, seed=0)["loglik"]
    write_reference(folder, scaled, k=20, seed=0)
    wrong = np.array(score(make_client(tmp_path, max_batch=4096), "linear", fresh, fpr=0.05)["p_value"])
    assert stats.kstest(wrong, "uniform").pvalue < 1e-6


def test_without_a_reference_score_is_409_and_says_how_to_make_one(client):
    response = client.post("/score", json={"model": "linear", "x": [[0.0] * 5]})
    assert response.status_code == 409
    assert "reference.json: missing" in response.json()["detail"] and "python -m service reference" in response.text
    assert client.get("/score", params={"model": "linear", "x": "0,0,0,0,0"}).status_code == 409
    version = client.get("/models/linear").json()["versions"][0]
    assert version["reference"] is None and version["scoring"]["ready"] is False


MALFORMED = {
    "not JSON": (b"{scores: [1, 2]}", "not JSON"),
    "unknown format": ({"format": "vae-reference/2"}, "format"),
    "unknown score": ({"score": "reconstruction"}, "score"),
    "no points": ({"scores": []}, "scores"),
    "NaN": ({"scores": [1.0, float("nan")]}, "scores.1"),
    "infinity": ({"scores": [float("-inf"), 1.0]}, "scores.0"),
    "missing k": ({"k": None}, "k"),
    "ratio without background": ({"score": "likelihood_ratio"}, "background"),
    "background that does not exist": ({"score": "likelihood_ratio", "background": "nowhere:1"}, "not served"),
    "background of another data_shape": ({"score": "likelihood_ratio", "background": "bern1d:1"}, "data_shape"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_reference_keeps_score_off_and_everything_else_serving(repository, make_client, case):
    change, phrase = MALFORMED[case]
    path = repository / "linear" / "1" / "reference.json"
    if isinstance(change, bytes):
        path.write_bytes(change)
    else:
        document = {"format": "vae-reference/1", "score": "loglik", "k": 100, "seed": 0, "scores": [-5.0, -6.0]}
        document.update(change)
        document = {key: value for key, value in document.items() if value is not None}
        path.write_text(json.dumps(document))  # json writes NaN and -Infinity, as Python users will
    client = make_client(repository)
    response = client.post("/score", json={"model": "linear:1", "x": [[0.0] * 5]})
    assert response.status_code == 409, response.text
    assert phrase in response.json()["detail"] and "linear/1/reference.json" in response.json()["detail"]
    version = client.get("/models/linear").json()["versions"][0]
    assert version["ready"] and not version["scoring"]["ready"] and phrase in version["scoring"]["error"]
    assert loglik(client, "linear:1", [[0.0] * 5], k=10)["loglik"]  # the rest of the version serves
    assert client.post("/encode", json={"model": "linear:1", "x": [[0.0] * 5]}).status_code == 200


def test_a_changed_reference_is_read_on_reload_and_never_answered_from_the_old_one(repository, make_client):
    folder = repository / "linear" / "1"
    write_reference(folder, np.linspace(-10, 0, 19), k=100)
    admin = keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY, cache_min_work=0))
    x = [[0.3, -0.2, 0.1, 0.0, 0.5]]
    first = score(admin, "linear:1", x, fpr=0.1)
    digest = admin.get("/models/linear").json()["versions"][0]["digest"]
    write_reference(folder, np.linspace(-100, -50, 19), k=100)  # every reference score below the point's
    assert reload(admin)["changed"] == ["linear/1"]
    second = score(admin, "linear:1", x, fpr=0.1)
    assert second["loglik"] == first["loglik"]
    assert second["p_value"] == [1.0] and second["threshold"] == -100 + 50 / 18
    assert admin.get("/models/linear").json()["versions"][0]["digest"] != digest  # the digest covers it
    (folder / "reference.json").unlink()
    reload(admin)
    assert admin.post("/score", json={"model": "linear:1", "x": x}).status_code == 409
    write_reference(repository / "linear" / "2", np.linspace(-10, 0, 19), k=100)  # a new one, on another version
    assert reload(admin)["changed"] == ["linear/2"]
    assert score(admin, "linear:2", x, fpr=0.1)["reference"]["n"] == 19


def test_a_reference_scored_with_more_samples_than_the_service_allows_says_so(tmp_path, make_client):
    folder = LinearGaussian().write(tmp_path)
    write_reference(folder, np.linspace(-8, -4, 19), k=5000)
    response = make_client(tmp_path, max_k=1000).post("/score", json={"model": "linear", "x": [[0.0] * 5],
                                                                      "fpr": 0.1})
    assert response.status_code == 409 and "k=5000" in response.text and "VAE_MAX_K=1000" in response.text


def test_scored_points_outliers_and_p_values_are_counted_per_version(tmp_path, make_client):
    folder = LinearGaussian().write(tmp_path)
    write_reference(folder, np.linspace(-8, -4, 19), k=100)
    client = make_client(tmp_path)
    x = np.concatenate([np.zeros((3, 5)), np.full((2, 5), 6.0)])  # two points far out
    answer = score(client, "linear", x, fpr=0.1)
    outliers = sum(answer["is_outlier"])
    assert outliers >= 2
    text = client.get("/metrics").text
    assert 'vae_scored_points_total{model="linear:1"} 5.0' in text
    assert f'vae_outliers_total{{model="linear:1"}} {float(outliers)}' in text
    below = sum(p <= 0.1 for p in answer["p_value"])
    assert f'vae_score_p_value_bucket{{le="0.1",model="linear:1"}} {float(below)}' in text
    assert 'vae_score_p_value_count{model="linear:1"} 5.0' in text


def test_score_answers_npz_and_takes_npy(tmp_path, make_client):
    folder = LinearGaussian().write(tmp_path)
    write_reference(folder, np.linspace(-8, -4, 19), k=100)
    client = make_client(tmp_path)
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    body = io.BytesIO()
    np.save(body, x)
    response = client.post("/score?model=linear&fpr=0.1&features=true", content=body.getvalue(),
                           headers={"content-type": "application/x-npy", "accept": "application/x-npz"})
    assert response.status_code == 200, response.text
    arrays = np.load(io.BytesIO(response.content))
    as_json = score(client, "linear", x, fpr=0.1, features=True)
    np.testing.assert_array_equal(arrays["p_value"], as_json["p_value"])
    assert arrays["feature_scores"].shape == (3, 5) and json.loads(str(arrays["reference"]))["n"] == 19


def test_every_shipped_model_answers_score_against_its_own_reference(make_client):
    from pathlib import Path

    from modelrepo.reference import parse_reference

    root = Path(__file__).resolve().parents[2] / "models"
    client = make_client(root, cache_min_work=256)
    names = sorted(folder.name for folder in root.iterdir() if folder.is_dir())
    assert {"digits", "digits-binary", "digits-mog", "digits-binary-discrete", "mnist-binary"} <= set(names)
    for name in names:
        version = client.get(f"/models/{name}").json()["versions"][-1]
        assert version["scoring"] == {"ready": True}, name
        reference = parse_reference((root / name / str(version["version"]) / "reference.json").read_bytes(), name)
        size = math.prod(version["manifest"]["data_shape"])
        point = np.zeros((1, size)) if version["manifest"]["likelihood"]["type"] == "bernoulli" else np.full((1, size), 0.5)
        answer = score(client, name, point, fpr=0.05)
        p_value, is_outlier, threshold = conformal_by_hand(reference.scores, answer["score"][0], 0.05)
        assert answer["p_value"] == [pytest.approx(p_value, abs=1e-15)] and answer["threshold"] == threshold, name
        assert answer["is_outlier"] == [is_outlier], name
        assert ("background_loglik" in answer) == (reference.score == "likelihood_ratio"), name

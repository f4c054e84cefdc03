"""POST /sample (service/http/routes/sample.py): draws from the prior, decoded, on a hand-built model."""

import numpy as np


def test_sample_draws_from_the_prior_and_decodes(client):
    mean = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3}).json()
    z = np.array(mean["z"])
    assert z.shape == (400, 1) and abs(z.mean()) < 0.2 and abs(z.std() - 1) < 0.1
    assert np.array(mean["x"]).shape == (400, 1, 2, 3)
    cold = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3, "temperature": 0.5}).json()
    np.testing.assert_allclose(np.array(cold["z"]), 0.5 * z, rtol=1e-6)
    drawn = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3, "mode": "sample"}).json()
    values = np.array(drawn["x"])
    assert set(np.unique(values)) <= {0.0, 1.0}
    # Each pixel's frequency matches its mean probability, averaged over z.
    assert np.all(np.abs(values.mean(0) - np.array(mean["x"]).mean(0)) < 0.1)
    assert client.post("/sample", json={"model": "bern1d", "n": 2, "seed": 3}).json()["z"] == mean["z"][:2]
    fresh = [client.post("/sample", json={"model": "bern1d", "n": 2}).json()["z"] for _ in range(2)]
    assert fresh[0] != fresh[1]  # no seed: fresh draws

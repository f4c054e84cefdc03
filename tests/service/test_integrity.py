"""Integrity of what is served: the digest and the sha256 checks are made on the very bytes the sessions are
built from, cache entries never cross instances that compute differently or outlive changed files, and no
response names a file by its absolute path."""

import hashlib
import json
import secrets
from pathlib import Path

import numpy as np
import onnx
import pytest

import modelrepo.manifest
from service.engine.repository import ModelRepository
from tests.service.handmade import LinearGaussian
from tests.service.test_cache import REDIS_URL, counter

ADMIN_KEY = "integrity-test-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def keyed(client):
    """A client that sends the admin key with every request (API keys guard every route but /health/*)."""
    client.headers.update(ADMIN)
    return client


def record_sha256(folder: Path, **overrides: str) -> None:
    """Write the graphs' sha256 into the manifest, as training/export does; `overrides` replace entries."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in ("encoder.onnx", "decoder.onnx")}
    manifest["sha256"].update(overrides)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def overwrite(folder: Path, model: LinearGaussian) -> None:
    """New weights written over a version's graphs in place: same names, same shapes, same sizes."""
    onnx.save(model.encoder, str(folder / "encoder.onnx"))
    onnx.save(model.decoder, str(folder / "decoder.onnx"))


def reload(client) -> dict:
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def test_recorded_sha256_are_verified_and_a_mismatch_keeps_only_that_version_out(repository, make_client):
    record_sha256(repository / "linear" / "1")  # correct: serves
    record_sha256(repository / "linear" / "2", **{"encoder.onnx": "ab" * 32})  # wrong: refused
    client = make_client(repository)
    versions = client.get("/models/linear").json()["versions"]
    assert versions[0]["ready"] and versions[0]["manifest"]["sha256"]["encoder.onnx"] != "ab" * 32
    assert not versions[1]["ready"]
    assert versions[1]["error"].startswith("linear/2/encoder.onnx: sha256 is ")
    assert "manifest.json records abababababababab" in versions[1]["error"]
    assert client.get("/health/ready").json()["failed"] == {"linear/2": versions[1]["error"]}
    refused = client.post("/encode", json={"model": "linear:2", "x": [[0] * 5]})
    assert refused.status_code == 503 and "linear/2/encoder.onnx: sha256 is" in refused.json()["detail"]
    assert client.post("/encode", json={"model": "linear", "x": [[0] * 5]}).json()["model"] == "linear:1"
    assert client.post("/encode", json={"model": "bern1d", "x": [[0] * 6]}).status_code == 200
    # Hand-built manifests without sha256 are served as before; their listing shows no such key.
    assert "sha256" not in client.get("/models/bern1d").json()["versions"][0]["manifest"]


@pytest.mark.parametrize("value, reason", [
    ("0123", "sha256: Value error, must map file names to their sha256 as 64 hex digits"),
    ({"encoder.onnx": "xyz"}, "must map file names to their sha256 as 64 hex digits"),
    ({"encoder.onnx": 5}, "must map file names to their sha256 as 64 hex digits"),
    ({"weights.bin": "0" * 64}, "sha256 names ['weights.bin'], which are not this model's graph files"),
])
def test_a_malformed_sha256_fails_the_version_with_a_clear_reason(repository, make_client, value, reason):
    manifest_path = repository / "linear" / "1" / "manifest.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "sha256": value}))
    client = make_client(repository)
    error = client.get("/health/ready").json()["failed"]["linear/1"]
    assert error.startswith("linear/1/manifest.json: ") and reason in error


def test_the_digest_is_of_the_bytes_loaded_even_when_a_file_is_replaced_meanwhile(repository, make_client,
                                                                                 monkeypatch):
    folder = repository / "linear" / "1"
    original = {f: (folder / f).read_bytes() for f in ("manifest.json", "encoder.onnx", "decoder.onnx")}
    replacement = LinearGaussian(seed=8)
    real_read = modelrepo.manifest._read

    def read_then_replace(path, where, when_missing):  # the race: the file changes right after it was read
        content = real_read(path, where, when_missing)
        if path == folder / "encoder.onnx" and path.read_bytes() == original["encoder.onnx"]:
            onnx.save(replacement.encoder, str(path))
        return content

    monkeypatch.setattr(modelrepo.manifest, "_read", read_then_replace)
    client = keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY))
    served = client.get("/models/linear").json()["versions"][0]
    expected = hashlib.sha256("".join(hashlib.sha256(b).hexdigest() for b in original.values()).encode()).hexdigest()
    assert served["digest"] == expected  # the files as read, not as they are on disk now
    x = np.random.default_rng(0).standard_normal((4, 5))
    old_mu = client.post("/encode", json={"model": "linear:1", "x": x.tolist()}).json()["mu"]
    model = LinearGaussian()
    posterior_var = 1.0 / (1.0 + (model.weight**2).sum(0) / model.noise_var)
    np.testing.assert_allclose(old_mu, (x - model.bias) @ model.weight * posterior_var / model.noise_var, atol=1e-5)
    # The replaced file changed the folder's signature: a reload loads it, and then serves its numbers.
    assert reload(client)["changed"] == ["linear/1"]
    new_mu = client.post("/encode", json={"model": "linear:1", "x": x.tolist()}).json()["mu"]
    assert not np.allclose(new_mu, old_mu)
    assert client.get("/models/linear").json()["versions"][0]["digest"] != expected


def test_no_response_names_a_file_by_its_absolute_path(repository, make_client):
    (repository / "linear" / "3").mkdir()  # no manifest
    LinearGaussian().write(repository, "truncated", 1)
    (repository / "truncated" / "1" / "decoder.onnx").write_bytes(b"\x08\x07garbage")
    record_sha256(LinearGaussian().write(repository, "tampered", 1), **{"decoder.onnx": "00" * 32})
    LinearGaussian().write(repository, "moved", 1)
    manifest = json.loads((repository / "moved" / "1" / "manifest.json").read_text())
    (repository / "moved" / "1" / "manifest.json").write_text(json.dumps({**manifest, "decoder": "gone.onnx"}))
    client = keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY))
    (repository / "linear" / "2" / "encoder.onnx").write_bytes(b"")  # breaks while an older load serves
    bodies = [reload(client), client.get("/health/ready").json(), client.get("/models").json()]
    names = client.get("/models").json()["models"]
    bodies += [client.get(f"/models/{m['name']}").json() for m in names]
    for reference in ("linear:3", "truncated", "tampered", "moved"):
        response = client.post("/encode", json={"model": reference, "x": [[0] * 5]})
        assert response.status_code == 503
        bodies.append(response.json())
    text = json.dumps(bodies)
    for absolute in {str(repository), str(repository.resolve())}:
        assert absolute not in text
    failed = client.get("/health/ready").json()["failed"]
    assert failed["linear/3"] == "linear/3/manifest.json: missing"
    assert failed["moved/1"] == "moved/1/manifest.json: decoder file 'gone.onnx' is missing"
    assert failed["truncated/1"].startswith("truncated/1: decoder.onnx: not a readable ONNX model")
    assert failed["tampered/1"].startswith("tampered/1/decoder.onnx: sha256 is")
    assert client.get("/health/ready").json()["reload_failed"]["linear/2"].startswith("linear/2: encoder.onnx")


def test_the_repository_strips_its_own_path_from_any_library_message(tmp_path):
    repository = ModelRepository(tmp_path, None)
    message = repository._relative(OSError(f"cannot open {tmp_path}/linear/1/encoder.onnx"))
    assert message == "cannot open linear/1/encoder.onnx"


def loglik_request() -> dict:
    """A request no earlier run has cached: the shared Redis keeps entries between runs."""
    x = np.random.default_rng(0).standard_normal((4, 5)).tolist()
    return {"model": "linear:2", "x": x, "k": 200, "seed": secrets.randbelow(2**31)}


def test_instances_that_compute_differently_never_share_loglik_entries(repository, make_client):
    request = loglik_request()
    fp32 = make_client(repository, redis_url=REDIS_URL, cache_ttl_s=120)
    first = fp32.post("/loglik", json=request).json()
    twin = make_client(repository, redis_url=REDIS_URL)  # the control: same settings, shares the entry
    assert twin.post("/loglik", json=request).json() == first and counter(twin, "vae_cache_hits", "loglik") == 1
    for overrides in ({"loglik_precision": "fp16"}, {"loglik_graph": "separate"}):
        other = make_client(repository, redis_url=REDIS_URL, cache_ttl_s=120, **overrides)
        other.post("/loglik", json=request)
        assert counter(other, "vae_cache_hits", "loglik") == 0, overrides
        assert counter(other, "vae_cache_misses", "loglik") == 1, overrides
    fp16 = make_client(repository, redis_url=REDIS_URL, loglik_precision="fp16")  # fp16 instances share theirs
    fp16.post("/loglik", json=request)
    assert counter(fp16, "vae_cache_hits", "loglik") == 1


def test_a_restart_on_changed_weights_answers_the_new_numbers(repository, make_client):
    request = loglik_request()
    before = make_client(repository, redis_url=REDIS_URL, cache_ttl_s=120).post("/loglik", json=request).json()
    folder = repository / "linear" / "2"
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    changed = LinearGaussian(seed=8)
    onnx.save(changed.decoder, str(folder / "decoder.onnx"))  # new weights, same shapes
    assert {f.name: f.stat().st_size for f in folder.iterdir()} == sizes
    restarted = make_client(repository, redis_url=REDIS_URL)
    after = restarted.post("/loglik", json=request).json()
    assert counter(restarted, "vae_cache_hits", "loglik") == 0
    assert not np.allclose(after["loglik"], before["loglik"])
    fresh = make_client(repository).post("/loglik", json=request).json()  # in-process cache: computed here
    assert after == fresh

"""Hot reload on a real repository: versions added, changed, removed and broken while the service runs;
POST /admin/reload makes each step deterministic, and one test leaves it to the poller alone."""

import asyncio
import gc
import shutil
import threading
import time
import weakref

import numpy as np
import pytest

from tests.service.handmade import LinearGaussian
from tests.service.test_integrity import ADMIN, ADMIN_KEY, keyed, overwrite, record_sha256, reload

X = np.random.default_rng(3).standard_normal((4, 5))


@pytest.fixture
def admin(repository, make_client):
    """A service on the hand-built repository that reloads only when asked."""
    return keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY))


def loglik(client, model: str, x: np.ndarray = X, k: int = 64) -> np.ndarray:
    response = client.post("/loglik", json={"model": model, "x": x.tolist(), "k": k})
    assert response.status_code == 200, response.text
    return np.array(response.json()["loglik"])


def test_versions_added_changed_and_removed_are_served_after_a_reload(admin, repository):
    assert reload(admin) == {"added": [], "changed": [], "removed": [], "failed": {},
                             "unchanged": ["bern1d/1", "linear/1", "linear/2"]}
    added = LinearGaussian(seed=11)
    added.write(repository, "linear", 3)
    assert reload(admin)["added"] == ["linear/3"]
    assert admin.post("/encode", json={"model": "linear", "x": X.tolist()}).json()["model"] == "linear:3"
    np.testing.assert_allclose(loglik(admin, "linear"), added.exact_loglik(X), atol=2e-4)

    changed = LinearGaussian(seed=12)
    np.testing.assert_allclose(loglik(admin, "linear:1"), LinearGaussian().exact_loglik(X), atol=2e-4)
    overwrite(repository / "linear" / "1", changed)
    report = reload(admin)
    assert report["changed"] == ["linear/1"] and report["added"] == [] and "linear/3" in report["unchanged"]
    np.testing.assert_allclose(loglik(admin, "linear:1"), changed.exact_loglik(X), atol=2e-4)  # not the cache

    shutil.rmtree(repository / "linear" / "2")
    assert reload(admin)["removed"] == ["linear/2"]
    gone = admin.post("/encode", json={"model": "linear:2", "x": X.tolist()})
    assert gone.status_code == 404 and "loaded models: bern1d:1, linear:1, linear:3" in gone.json()["detail"]
    assert [v["version"] for v in admin.get("/models/linear").json()["versions"]] == [1, 3]


@pytest.mark.parametrize("breakage", ["truncated encoder", "wrong sha256"])
def test_a_broken_new_load_leaves_the_old_one_serving_and_says_why(admin, repository, breakage):
    folder = repository / "linear" / "1"
    served = loglik(admin, "linear:1")
    if breakage == "truncated encoder":
        content = (folder / "encoder.onnx").read_bytes()
        (folder / "encoder.onnx").write_bytes(content[: len(content) // 2])
        reason = "linear/1: encoder.onnx: not a readable ONNX model"
    else:
        overwrite(folder, LinearGaussian(seed=12))
        record_sha256(folder, **{"decoder.onnx": "cd" * 32})
        reason = "linear/1/decoder.onnx: sha256 is"
    report = reload(admin)
    assert list(report["failed"]) == ["linear/1"] and report["failed"]["linear/1"].startswith(reason)
    assert report["changed"] == [] and "linear/1" not in report["unchanged"]
    np.testing.assert_allclose(loglik(admin, "linear:1", k=66), served, atol=2e-4)  # computed by the old load
    version = admin.get("/models/linear").json()["versions"][0]
    assert version["ready"] and version["reload_error"] == report["failed"]["linear/1"]
    ready = admin.get("/health/ready").json()
    assert ready["reload_failed"] == {"linear/1": version["reload_error"]} and ready["failed"] == {}
    # Not tried again until the files change again.
    again = reload(admin)
    assert again["failed"] == {} and "linear/1" in again["unchanged"]
    assert admin.get("/models/linear").json()["versions"][0]["reload_error"] == version["reload_error"]
    # The copy completes: the new files serve and the error is gone.
    fixed = LinearGaussian(seed=13)
    shutil.rmtree(folder)
    fixed.write(repository, "linear", 1)
    assert reload(admin)["changed"] == ["linear/1"]
    np.testing.assert_allclose(loglik(admin, "linear:1"), fixed.exact_loglik(X), atol=2e-4)
    assert "reload_error" not in admin.get("/models/linear").json()["versions"][0]
    assert admin.get("/health/ready").json()["reload_failed"] == {}


def test_a_half_copied_new_version_is_listed_with_its_reason_until_the_copy_completes(admin, repository):
    added = LinearGaussian(seed=11)
    folder = added.write(repository, "linear", 3)
    content = (folder / "decoder.onnx").read_bytes()
    (folder / "decoder.onnx").write_bytes(content[:100])
    report = reload(admin)
    assert report["added"] == [] and report["failed"]["linear/3"].startswith("linear/3: decoder.onnx: not a readable")
    assert admin.post("/encode", json={"model": "linear", "x": X.tolist()}).json()["model"] == "linear:2"
    refused = admin.post("/encode", json={"model": "linear:3", "x": X.tolist()})
    assert refused.status_code == 503 and "linear/3: decoder.onnx" in refused.json()["detail"]
    assert "linear/3" in admin.get("/health/ready").json()["failed"]
    (folder / "decoder.onnx").write_bytes(content)
    assert reload(admin)["added"] == ["linear/3"]
    np.testing.assert_allclose(loglik(admin, "linear"), added.exact_loglik(X), atol=2e-4)
    assert admin.get("/health/ready").json()["failed"] == {}


def test_touched_files_with_the_same_bytes_keep_the_loaded_model(admin, repository):
    before = admin.app.state.dataplane.model("linear:1")
    path = repository / "linear" / "1" / "decoder.onnx"
    path.write_bytes(path.read_bytes())
    report = reload(admin)
    assert report["changed"] == [] and "linear/1" in report["unchanged"]
    assert admin.app.state.dataplane.model("linear:1") is before


def test_the_poller_alone_picks_up_a_change_within_a_few_intervals(repository, make_client):
    client = make_client(repository, reload_interval_s=0.2)
    added = LinearGaussian(seed=11)
    added.write(repository, "linear", 3)
    deadline = time.monotonic() + 10
    while client.get("/models/linear").json()["default_version"] != 3:
        assert time.monotonic() < deadline, "the poller did not load linear/3 within 10 s (50 intervals)"
        time.sleep(0.05)
    np.testing.assert_allclose(loglik(client, "linear"), added.exact_loglik(X), atol=2e-4)
    shutil.rmtree(repository / "linear" / "3")
    while client.get("/models/linear").json()["default_version"] != 2:
        assert time.monotonic() < deadline + 10, "the poller did not drop linear/3"
        time.sleep(0.05)


def test_a_request_in_flight_finishes_on_the_version_it_started_with(repository, make_client):
    client = keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY))
    reference = make_client(repository)  # the old files' answer, computed by another service
    x = np.random.default_rng(5).standard_normal((10, 5))
    request = {"model": "linear:2", "x": x.tolist(), "k": 10000, "seed": 7}  # large: runs in a worker thread
    old_answer = reference.post("/loglik", json=request).json()
    old = client.app.state.dataplane.model("linear:2")
    started, resume = threading.Event(), threading.Event()
    real_loglik = old.loglik

    def held_loglik(*args):  # holds the request inside the old engine's run until the swap is done
        started.set()
        assert resume.wait(30)
        return real_loglik(*args)

    old.loglik = held_loglik
    answers = []
    in_flight = threading.Thread(target=lambda: answers.append(client.post("/loglik", json=request)))
    in_flight.start()
    assert started.wait(30)
    replacement = LinearGaussian(seed=12)
    overwrite(repository / "linear" / "2", replacement)
    assert reload(client)["changed"] == ["linear/2"]  # while the request runs
    assert client.app.state.dataplane.model("linear:2") is not old
    resume.set()
    in_flight.join(30)
    assert answers[0].status_code == 200 and answers[0].json() == old_answer
    new_answer = client.post("/loglik", json=request).json()
    np.testing.assert_allclose(new_answer["loglik"], replacement.exact_loglik(x), atol=2e-4)
    assert not np.allclose(new_answer["loglik"], old_answer["loglik"])


def test_reload_is_an_admin_action(repository, make_client):
    open_service = make_client(repository)
    refused = open_service.post("/admin/reload")
    assert refused.status_code == 403 and "set VAE_API_KEYS" in refused.json()["detail"]
    keyed_client = make_client(repository, api_keys=f"other-key, {ADMIN_KEY}")
    assert keyed_client.post("/admin/reload", headers=ADMIN).status_code == 200


def test_a_vanished_repository_folder_changes_nothing(tmp_path, make_client):
    root = tmp_path / "repo"
    LinearGaussian().write(root, "linear", 1)
    client = keyed(make_client(root, reload_interval_s=0, api_keys=ADMIN_KEY))
    root.rename(tmp_path / "elsewhere")
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 503 and "no longer a readable folder" in response.json()["detail"]
    assert str(tmp_path) not in response.text
    assert client.post("/encode", json={"model": "linear", "x": X.tolist()}).status_code == 200


def test_a_version_swapped_out_is_freed_once_no_request_can_hold_it(repository, make_client):
    """What start-up loaded is frozen out of the garbage collector (service.app.CollectorFreeze); a version a
    reload replaced goes back to it and is collected once every request's deadline could have passed."""
    client = keyed(make_client(repository, reload_interval_s=0, api_keys=ADMIN_KEY, request_timeout_s=0.2))
    assert gc.get_freeze_count() > 0
    old = weakref.ref(client.app.state.dataplane.model("linear:2"))
    overwrite(repository / "linear" / "2", LinearGaussian(seed=13))
    assert reload(client)["changed"] == ["linear/2"]
    deadline = time.monotonic() + 10
    while old() is not None or gc.get_freeze_count() == 0:  # collected, and what is left frozen again
        assert time.monotonic() < deadline, "the old version is still alive 10 s after the swap"
        client.portal.call(asyncio.sleep, 0.1)
    np.testing.assert_allclose(loglik(client, "linear:2"), LinearGaussian(seed=13).exact_loglik(X), atol=2e-4)

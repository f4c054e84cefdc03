"""Three replicas of `python -m service` sharing one Redis and one model repository behind a real HAProxy, on
loopback (tests/service/cluster.py): the cache is shared, a rolling restart under load fails no request, a new
model version reaches every replica within the reload interval without mixing versions, and a replica killed
under load is routed around. bench/replicas.py runs the same scenarios and writes their figures into
docs/RELIABILITY.md ("Replicas")."""

import pytest

from tests.service import replica_scenarios as scenarios
from tests.service.cluster import FRONTENDS, READY_DELAY_S, RELOAD_INTERVAL_S, start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = start_cluster(tmp_path_factory.mktemp("replicas"))
    yield running
    running.close()


def test_a_result_computed_on_one_replica_is_a_cache_hit_on_the_others(cluster):
    result = scenarios.cache_shared(cluster)
    assert result["status"] == 200 and result["identical"], result
    assert result["delta"]["r0"] == (0, 1), result  # computed there
    assert result["delta"]["r1"] == (1, 0) and result["delta"]["r2"] == (1, 0), result  # answered from Redis
    assert result["keys_in_redis"] >= 1


def test_a_rolling_restart_under_load_fails_no_request(cluster):
    result = scenarios.rolling_restart(cluster)
    report = result["load"]
    assert report.failures == [], report.failures[:5]  # zero, even through the frontend that never retries
    assert all(report.answered[name] > 100 for name in FRONTENDS), report.answered
    for step in result["steps"]:
        assert step["exit_code"] == 0, step
        # out of every backend's rotation before it stops accepting, with margin: why READY_DELAY_S works
        assert step["out_of_rotation_s"] < READY_DELAY_S * 0.75 <= step["exited_s"], step


def test_a_new_version_reaches_every_replica_within_the_reload_interval_and_no_answer_mixes_versions(cluster):
    result = scenarios.new_version(cluster)
    assert sorted(result["served_after_s"]) == ["r0", "r1", "r2"], result
    # a look every RELOAD_INTERVAL_S, then the load of a small model beside the serving one (a few 100 ms)
    assert max(result["served_after_s"].values()) < RELOAD_INTERVAL_S + 1.5, result
    assert result["mixed"] == [] and result["failures"] == [], result
    assert result["old_after_switch"] == 0 and result["answers_after_switch"] > 20, result
    assert {label for label, _ in result["labels"]} == {"digits-binary:1", "digits-binary:2"}, result


def test_a_replica_killed_under_load_is_routed_around(cluster):
    result = scenarios.replica_killed(cluster)
    failed = result["failed"]
    # The balancer takes the dead replica out after `fall` failed checks; a request it had, or sent it meanwhile,
    # fails unless retried: on the frontend that retries nothing some do (so the kill hit the load), on the one
    # that replays (safe: every route is a pure function of its input) none does.
    assert result["out_of_rotation_s"] < 2.0, result
    assert failed["bare"] > 0 and failed["replay"] == 0, result
    assert failed["redispatch"] <= failed["bare"], result
    # Each failure at once, never a hung request: HAProxy's 503 for a connection it could not make, or the client's
    # keep-alive connection closed without an answer (what HAProxy does when a server dies on a reused connection,
    # so that the client may retry)
    kinds = {f.what.split(" ")[0] for f in result["load"].failures}
    assert kinds <= {"503", "RemoteProtocolError:"}, result["load"].failures[:5]

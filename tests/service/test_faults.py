"""Faults of the components the service depends on, under load: nothing a client sees may fail."""

from tests.service import scenarios
from tests.service.serving import RestartableRedis, running_server


def test_redis_killed_and_restarted_under_load_fails_no_request(tmp_path):
    redis_server = RestartableRedis()
    try:
        with running_server(tmp_path, redis_url=redis_server.url, redis_retry_s=0.3) as server:
            result = scenarios.redis_killed_under_load(server, redis_server.restart, clients=8, seconds=6.0)
    finally:
        redis_server.close()
    assert set(result["statuses"]) == {200} and sum(result["statuses"].values()) > 200, result
    assert result["hits_at_end"] > result["hits_at_restart"] > 0, result  # the cache serves again by itself

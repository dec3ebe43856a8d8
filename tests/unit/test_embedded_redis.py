"""The embedded default's Redis answers as a real Redis does, down to its sockets."""

from __future__ import annotations

import socket

import redis

from infra.engine.embedded_redis import FakeRedisServer, embedded_redis


def test_each_client_socket_has_nagles_algorithm_off_as_redis_sets_it() -> None:
    server = FakeRedisServer(("127.0.0.1", 0), server_type="redis")
    try:
        with socket.create_connection(server.server_address[:2]):
            accepted, _ = server.get_request()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.server_close()


def test_a_transaction_of_several_commands_answers_every_reply() -> None:
    with embedded_redis() as url:
        client = redis.Redis.from_url(url)
        pipeline = client.pipeline(transaction=True)
        pipeline.set("counter", 1).incr("counter").get("counter")

        assert pipeline.execute() == [True, 2, b"2"]
        client.close()

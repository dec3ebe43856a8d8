"""infra/deploy/localstack/docker-compose.yml: the stack `deploy.py --docker-compose` expects, on loopback, no token
stored."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra.deploy.localstack import deploy

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "localstack" / "docker-compose.yml"


def test_localstack_postgres_and_redis_share_the_network_lambda_containers_join() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"localstack", "postgres", "redis"}
    network = services["localstack"]["environment"]["LAMBDA_DOCKER_NETWORK"]
    assert compose["networks"][network]["name"] == network
    assert all(service["networks"] == [network] for service in services.values())
    stores = deploy.COMPOSE_DATA_STORES
    assert {stores.database_host, stores.redis_host} == set(services) - {"localstack"}
    assert services["postgres"]["environment"]["POSTGRES_DB"] == stores.database_name


def test_every_port_is_published_on_loopback_only_and_the_token_comes_from_the_environment() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    ports = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("127.0.0.1:") for port in ports)
    assert compose["services"]["localstack"]["environment"]["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"
    assert "POSTGRES_PASSWORD" not in compose["services"]["postgres"]["environment"]

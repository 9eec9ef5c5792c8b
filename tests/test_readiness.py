"""Readiness: /readyz answers 200 only while the database and Redis answer, 503 naming the one
that does not; /healthz stays the cheap liveness probe that needs neither."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import free_port
from trainfaas.services.core.settings import load_settings


def test_ready_while_the_database_and_redis_answer(api: Any) -> None:
    response = api.as_(None).get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "database": "ok", "redis": "ok"}


def test_a_redis_that_does_not_answer_makes_it_unready_and_says_so(short_tmp: Path) -> None:
    from trainfaas.services.api.app import create_app

    settings = load_settings(home=short_tmp, database_url=f"sqlite:///{short_tmp / 'trainfaas.db'}",
                             redis_url=f"redis://127.0.0.1:{free_port()}/0", data_roots=str(short_tmp / "data"))
    client = create_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "unavailable" and set(error["fields"]) == {"redis"}, error
    assert "redis" in error["message"] and "database" not in error["message"]
    assert client.get("/healthz").status_code == 200  # liveness needs neither


def test_a_database_that_does_not_answer_makes_it_unready_and_says_so(short_tmp: Path, redis_url: str) -> None:
    from trainfaas.services.api.app import create_app

    settings = load_settings(home=short_tmp, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
                             redis_url=redis_url, data_roots=str(short_tmp / "data"))
    client = create_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert set(error["fields"]) == {"database"}, error
    assert client.get("/healthz").status_code == 200

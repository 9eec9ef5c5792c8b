"""TLS in front of the API: deploy/nginx-tls.conf, filled in, with a real nginx before a real stack.

The SDK verifies the certificate (a CA it is told about through ``REQUESTS_CA_BUNDLE``), tokens
pass through the proxy, and a certificate it cannot verify is an error that says what to do.
"""
from __future__ import annotations

import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import IN_CI, free_port, wait_until
from trainfaas.services.sdk.client import ApiError, Client

pytestmark = pytest.mark.stack
SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx-tls.conf"


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key."""
    cert, key = folder / "api.pem", folder / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _nginx_config(folder: Path, upstream: str, port: int, cert: Path, key: Path) -> Path:
    """deploy/nginx-tls.conf filled in the way its header says, inside a minimal nginx.conf."""
    site = string.Template(SITE.read_text()).safe_substitute(
        TRAINFAAS_TLS_LISTEN=f"127.0.0.1:{port}", TRAINFAAS_SERVER_NAME="127.0.0.1", TRAINFAAS_TLS_CERT=str(cert),
        TRAINFAAS_TLS_KEY=str(key), TRAINFAAS_UPSTREAM=upstream)
    assert "${TRAINFAAS_" not in site, "every variable of deploy/nginx-tls.conf is filled in"
    (folder / "site.conf").write_text(site)
    temp = "".join(f"{name}_temp_path {folder / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(f"user root;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
                      f"events {{}}\nhttp {{\naccess_log off;\n{temp}include {folder / 'site.conf'};\n}}\n")
    return config


@pytest.fixture
def nginx() -> str:
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if path is None:
        message = "nginx is not installed (apt-get install nginx-light)"
        pytest.fail(f"{message}; CI=true: a missing tool is a failure") if IN_CI else pytest.skip(message)
    return path


@pytest.fixture
def proxy(nginx: str, stack: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The stack's API behind nginx with TLS: its https URL and the CA file that verifies it."""
    cert, key = _certificate(tmp_path)
    port = free_port()
    upstream = stack.settings.api_url.removeprefix("http://")
    config = _nginx_config(tmp_path, upstream, port, cert, key)
    subprocess.run([nginx, "-t", "-c", str(config)], check=True, capture_output=True)
    server = subprocess.Popen([nginx, "-c", str(config), "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url, cert), timeout_s=30, what="nginx to answer over TLS")
        yield url, cert
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str, ca: Path) -> bool:
    try:
        return requests.get(f"{url}/healthz", verify=str(ca), timeout=2).ok
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_api_behind_the_tls_proxy_example_verifies_and_passes_tokens(
        proxy: tuple[str, Path], stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = proxy
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    admin = Client(url, stack.admin_token)
    project = admin.create_project("tls")
    assert project["name"] == "tls"
    token = admin.create_token("read", project="tls")["token"]
    assert [p["name"] for p in Client(url, token).list_projects()] == ["tls"]
    with pytest.raises(ApiError) as refused:
        Client(url, "tf_" + "0" * 64).list_projects()
    assert refused.value.status == 401  # the API's own answer, through the proxy

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(ApiError) as unverified:
        Client(url, stack.admin_token).list_projects()
    assert unverified.value.code == "tls" and "REQUESTS_CA_BUNDLE" in unverified.value.message

"""The operator's way to the deployed API: a GET signed with SigV4 for execute-api, in the API's region."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.tools.signed_request import _region_of, signed_get


class Recorder(BaseHTTPRequestHandler):
    seen: dict[str, str] = {}  # noqa: RUF012 - the handler class is the test's one recorder

    def do_GET(self) -> None:
        Recorder.seen = dict(self.headers.items())
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"<html>saga</html>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_request_is_signed_with_sigv4_for_execute_api(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)

    status, content_type, body = signed_get(f"{api}/sagas/abc/view", region="eu-west-1")

    assert (status, content_type, body) == (200, "text/html; charset=utf-8", b"<html>saga</html>")
    authorization = Recorder.seen["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "Signature=" in authorization and Recorder.seen["X-Amz-Date"]


def test_the_region_is_read_from_an_execute_api_url() -> None:
    assert _region_of("https://a1b2c3.execute-api.eu-central-1.amazonaws.com/api") == "eu-central-1"
    assert _region_of("http://127.0.0.1:8000") is None

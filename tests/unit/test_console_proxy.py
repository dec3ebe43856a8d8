"""`make console`'s proxy: what the console's page sends reaches the API signed with SigV4 for the operator's
credentials (checked by signing the received request again), and nothing another site sends is signed."""

from __future__ import annotations

import hmac
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.tools.console_proxy import SigningProxy

OPERATOR = Credentials("AKIDEXAMPLE", "the-operators-secret")
REGION = "eu-west-1"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/execute-api/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def signed_by(received: Received, credentials: Credentials, region: str) -> bool:
    """Whether `received` carries a valid SigV4 signature for execute-api by `credentials` in `region`: botocore
    signs the same request (the headers it says it signed, its time) again and the signatures are equal."""
    match = AUTHORIZATION.fullmatch(received.headers.get("Authorization", ""))
    if match is None or match["key"] != credentials.access_key or match["region"] != region:
        return False
    headers = {name: value for name, value in received.headers.items() if name.lower() in match["signed"].split(";")}
    url = f"http://{received.headers['Host']}{received.path}"
    request = AWSRequest(method=received.method, url=url, data=received.body or None, headers=headers)
    request.context["timestamp"] = received.headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, "execute-api", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return hmac.compare_digest(expected, match["signature"])


@dataclass
class StubApi:
    base_url: str
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[StubApi]:
    stub = StubApi("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._record(b"")

        def do_POST(self) -> None:
            self._record(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _record(self, body: bytes) -> None:
            stub.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
            answer = json.dumps({"path": self.path}).encode()
            self.send_response(202 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        stub.base_url = f"http://127.0.0.1:{port}/api"
        yield stub


@pytest.fixture
def proxy(api: StubApi) -> Iterator[str]:
    with _serving(SigningProxy(0, api.base_url, OPERATOR, REGION)) as port:
        yield f"http://127.0.0.1:{port}"


class _serving:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server

    def __enter__(self) -> int:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _send(url: str, body: dict[str, str] | None = None, **headers: str) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_the_console_s_get_reaches_the_api_under_its_stage_path_signed_for_the_operator(
    api: StubApi, proxy: str
) -> None:
    status, body = _send(f"{proxy}/console?status=FAILED,RUNNING&customer_id=c-1")

    assert (status, json.loads(body)) == (200, {"path": "/api/console?status=FAILED,RUNNING&customer_id=c-1"})
    [received] = api.received
    assert signed_by(received, OPERATOR, REGION)
    assert not signed_by(received, Credentials(OPERATOR.access_key, "another-secret"), REGION)
    assert not signed_by(received, OPERATOR, "us-east-1")


def test_an_action_s_post_is_signed_with_its_body(api: StubApi, proxy: str) -> None:
    status, body = _send(f"{proxy}/sagas/{'a' * 32}/resolve", {"note": "refunded by hand"}, Origin=proxy)

    assert (status, json.loads(body)) == (202, {"path": f"/api/sagas/{'a' * 32}/resolve"})
    [received] = api.received
    assert (received.method, received.body) == ("POST", b'{"note": "refunded by hand"}')
    assert received.headers["Content-Type"] == "application/json"
    assert signed_by(received, OPERATOR, REGION)
    tampered = Received(received.method, received.path, received.headers, b'{"note": "something else"}')
    assert not signed_by(tampered, OPERATOR, REGION)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://elsewhere.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Host": "rebound.example:8765"}],
    ids=["another-origin", "cross-site", "another-host"],
)
def test_nothing_another_site_sends_is_signed(api: StubApi, proxy: str, headers: dict[str, str]) -> None:
    status, body = _send(f"{proxy}/sagas/{'a' * 32}/cancel", {}, **headers)

    assert status == 403, body
    assert api.received == []

"""`make console API=<url>`: the console of the deployed API in the operator's browser. API Gateway demands a
SigV4-signed request on every route, which a browser cannot make; so this serves the console on 127.0.0.1 and
forwards each request the page makes (its GETs and its actions' POSTs, all relative URLs) to the API, signed with
the operator's AWS credentials (the usual chain: environment, profile, SSO).

    python -m infra.tools.console_proxy --api https://abc.execute-api.eu-west-1.amazonaws.com/api [--port 8765]

It listens on loopback only, and forwards only what the console's own page sends: another site open in the same
browser could otherwise make it sign a cancel (a cross-site POST) or read an answer (DNS rebinding).
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.credentials import Credentials

from infra.tools.signed_request import credentials_of, region_for, send_signed

DEFAULT_PORT = 8765
MAX_BODY_BYTES = 256 * 1024
"""The API's own limit on a body."""
FORWARDED_HEADERS = ("Content-Type", "Idempotency-Key", "X-Correlation-Id")


class SigningProxy(ThreadingHTTPServer):
    """Forwards to `api` (its base URL, the stage path included) what the console sends, signed."""

    def __init__(self, port: int, api: str, credentials: Credentials, region: str) -> None:
        super().__init__(("127.0.0.1", port), ConsoleRequest)
        self.api, self.credentials, self.region = api.rstrip("/"), credentials, region

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ConsoleRequest(BaseHTTPRequestHandler):
    server: SigningProxy

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        refused = self._refusal()
        if refused:
            self._answer(403, "text/plain; charset=utf-8", refused.encode())
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, "text/plain; charset=utf-8", b"body over 256 KB")
            return
        body = self.rfile.read(length) if self.command == "POST" else None
        headers = {name: self.headers[name] for name in FORWARDED_HEADERS if self.headers.get(name)}
        status, content_type, answer = send_signed(
            self.command, self.server.api + self.path, self.server.credentials, self.server.region, body, headers
        )
        self._answer(status, content_type, answer)

    def _refusal(self) -> str:
        """Why this request is not the console's own (empty when it is)."""
        if self.headers.get("Host") != self.server.origin.removeprefix("http://"):
            return f"only http://{self.server.origin.removeprefix('http://')} is served"
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.server.origin:
            return f"a request from {origin} is not the console's"
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            return "a cross-site request is not the console's"
        if not self.path.startswith("/") or self.path.startswith("//"):
            return "not a path of the API"
        return ""

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True, help="the deployed API's base URL (the stack's EndpointURL output)")
    parser.add_argument("--region", help="the API's region, if its URL does not say")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the local port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    if not args.api.startswith("https://"):
        parser.error("--api must be the https:// URL of the deployed API")
    session = boto3.Session()
    proxy = SigningProxy(args.port, args.api, credentials_of(session), region_for(args.api, session, args.region))
    print(f"the console: {proxy.origin}/console (requests signed for {args.api}); Ctrl-C stops", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

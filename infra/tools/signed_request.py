"""`make saga-page SAGA=<id> API=<url>`: an operator's way to the deployed API, where every route needs a SigV4-signed
request (IAM). It signs a GET with the caller's AWS credentials (the usual chain: environment, profile, SSO),
and saves an HTML answer (the saga page) to a file and opens it in a browser, or prints a JSON one.

    python -m infra.tools.signed_request --api https://abc.execute-api.eu-west-1.amazonaws.com/api /sagas/<id>/view
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
TIMEOUT_SECONDS = 30


def signed_get(url: str, region: str | None = None) -> tuple[int, str, bytes]:
    """GET `url` signed for API Gateway with the caller's credentials: (status, content type, body)."""
    return signed_request("GET", url, region=region)


def signed_request(
    method: str, url: str, body: bytes | None = None, region: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """`method` `url` (with `body`) signed for API Gateway with the caller's credentials: (status, content type,
    body). The region is `region`, else the URL's, else the session's."""
    session = boto3.Session()
    return send_signed(method, url, credentials_of(session), region_for(url, session, region), body, headers)


def credentials_of(session: boto3.Session) -> Credentials:
    """The session's credentials (refreshed as they expire: SSO, an assumed role); exits when it has none."""
    credentials = session.get_credentials()
    if credentials is None:
        raise SystemExit("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return credentials


def region_for(url: str, session: boto3.Session, region: str | None = None) -> str:
    """`region`, else the one in the API's URL, else the session's; exits when none is known."""
    region = region or _region_of(url) or session.region_name
    if not region:
        raise SystemExit("no AWS region: pass --region or set AWS_REGION")
    return region


def send_signed(
    method: str,
    url: str,
    credentials: Credentials,
    region: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """`method` `url` (with `body`) signed with `credentials` for API Gateway in `region`: (status, content type,
    body), an error status included."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("only http(s) URLs are fetched")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(credentials.get_frozen_credentials(), SERVICE, region).add_auth(request)
    prepared = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(prepared, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310  # nosec B310
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Content-Type", ""), refused.read()


def _region_of(url: str) -> str | None:
    """The region in an execute-api host name (`<id>.execute-api.<region>.amazonaws.com`)."""
    parts = (urlsplit(url).hostname or "").split(".")
    return parts[2] if len(parts) > 3 and parts[1] == SERVICE else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True, help="the deployed API's base URL (the stack's EndpointURL output)")
    parser.add_argument("--region", help="the API's region, if its URL does not say")
    parser.add_argument("--no-open", action="store_true", help="save an HTML answer, do not open a browser")
    parser.add_argument("path", help="the route, e.g. /sagas/<saga_id>/view")
    args = parser.parse_args(argv)
    if not args.api.startswith("https://"):
        parser.error("--api must be the https:// URL of the deployed API")
    status, content_type, body = signed_get(args.api.rstrip("/") + "/" + args.path.lstrip("/"), args.region)
    if status >= 400:
        print(f"HTTP {status}: {body.decode(errors='replace')[:500]}", file=sys.stderr)
        return 1
    if content_type.startswith("text/html"):
        page = Path(tempfile.mkdtemp(prefix="saga-page-")) / "page.html"
        page.write_bytes(body)
        print(f"saved to {page}")
        if not args.no_open:
            webbrowser.open(page.as_uri())
        return 0
    print(body.decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `Prefer` request header (RFC 7240): the one preference the API honours, `wait`.

A preference is a request, not a requirement (RFC 7240 §2): one this API does not know, or cannot read, is ignored,
never an error; a preference given twice counts by its first instance. `wait = "wait" BWS "=" BWS delta-seconds`
(§4.3), a count of seconds (1*DIGIT); a token and a quoted string are the same value (RFC 9110 §5.6.6).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from chalicelib.presentation.api_models import MAX_WAIT_SECONDS, PREFER_HEADER

_ELEMENT = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')
"""One comma-separated element of the header; a quoted string may hold commas."""
_PREFERENCE = re.compile(r'\s*(?P<name>[!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^;\s]*))?')
_DELTA_SECONDS = re.compile(r"[0-9]+")


def requested_wait(headers: Mapping[str, str]) -> int | None:
    """The seconds `Prefer: wait=N` asks for, cut to MAX_WAIT_SECONDS; None when there is no readable wait."""
    for element in _ELEMENT.findall(headers.get(PREFER_HEADER.lower()) or ""):
        preference = _PREFERENCE.match(element)
        if preference is None or preference["name"].lower() != "wait":
            continue
        value = preference["value"] or ""
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        rest = element[preference.end() :].strip()
        if not _DELTA_SECONDS.fullmatch(value) or (rest and not rest.startswith(";")):
            return None  # only the first instance counts, and it cannot be read
        digits = value.lstrip("0") or "0"
        return MAX_WAIT_SECONDS if len(digits) > 2 else min(int(digits), MAX_WAIT_SECONDS)
    return None

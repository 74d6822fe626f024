"""Optional API keys: `Authorization: Bearer <key>`, checked against configured SHA-256 hashes.

With no keys configured the API is open (the embedded default). With keys, every /v1 request needs
one, and each key sees only the articles it submitted: another key's article is a 404, exactly as if
it did not exist. Keys are never stored, only their hashes; comparisons take constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from flask import Request

from service.problems import Problem

ANONYMOUS = ""  # the owner of every article when no keys are configured


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "nd_" + secrets.token_urlsafe(32)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="newsdesk"'}
    )


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def identify(request: Request, keys: Mapping[str, str]) -> str | None:
    """The name of the key a request carries (`keys`: each key's SHA-256 -> its name), ANONYMOUS when no
    keys are configured, None without a valid key. It never refuses: the rate limiter asks first, so that
    a refusal is counted too."""
    if not keys:
        return ANONYMOUS
    token = _bearer_token(request)
    if token is None:
        return None
    digest = hash_key(token)
    owner = None
    for expected, name in keys.items():  # every entry is compared, so timing does not reveal which matched
        if hmac.compare_digest(digest, expected):
            owner = name
    return owner


def unauthorized(request: Request) -> Problem:
    """The 401 for a request that `identify` found no valid key in."""
    if _bearer_token(request) is None:
        return _unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    return _unauthorized("The API key is not valid.")

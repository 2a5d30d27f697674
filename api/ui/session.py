"""Sign-in sessions of the page: a signed cookie that names the principal an API key
belongs to, with the session's CSRF token.

The cookie holds no key: ``{"n": principal name, "r": role, "k": the key's fingerprint (an
HMAC of it under the session secret), "c": CSRF token, "t": issued}``, base64url, then an
HMAC-SHA256 of it under the service's session secret. It is read back only while the signature
holds, it is younger than ``MAX_AGE_S``, and the very key it was signed in with is still
configured for that principal (a key taken out of ``REPLENISH_API_KEYS`` ends its sessions at
the next restart, even when another key names the same principal). The cookie
is HttpOnly, SameSite=Strict and, where the page is served over TLS, Secure; every form the
page posts carries the CSRF token, compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from api.keys import digest, entry_digest
from domain.intake import Principal

COOKIE = "replenish_session"
SIGN_IN_COOKIE = "replenish_sign_in"  # the sign-in form's own CSRF token, before a session exists
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    issued: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and reads session cookies under one secret (``secret``: at least 32 bytes)."""

    def __init__(self, secret: bytes, max_age_s: float = MAX_AGE_S) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self.secret = secret
        self.max_age_s = max_age_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def _fingerprint(self, key_digest: str) -> str:
        """Of a key's SHA-256 (``api.keys.digest``): a key in clear and its hashed entry agree."""
        return _b64(hmac.new(self.secret, b"key:" + key_digest.encode(), hashlib.sha256).digest()[:16])

    def issue(self, principal: Principal, key: str, now: float | None = None) -> tuple[str, Session]:
        """A cookie for ``principal``, signed in with API key ``key``."""
        session = Session(principal, secrets.token_urlsafe(24), time.time() if now is None else now)
        payload = _b64(orjson.dumps({"n": principal.name, "r": principal.role, "k": self._fingerprint(digest(key)),
                                     "c": session.csrf, "t": session.issued}))
        return f"{payload}.{self._sign(payload)}", session

    def read(self, value: str | None, principals: dict[str, Principal],
             now: float | None = None) -> Session | None:
        """The session a cookie holds, or None (no cookie, a bad signature, too old, or its key
        no longer configured for its principal)."""
        if not value or not value.isascii() or value.count(".") != 1 or len(value) > 4096:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            principal = Principal(str(data["n"]), str(data["r"]))
            fingerprint, csrf, issued = str(data["k"]), str(data["c"]), float(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        age = (time.time() if now is None else now) - issued
        if not 0 <= age <= self.max_age_s:
            return None
        if not any(p == principal and hmac.compare_digest(self._fingerprint(entry_digest(k)).encode(),
                                                          fingerprint.encode())
                   for k, p in principals.items()):
            return None
        return Session(principal, csrf, issued)


def same_token(given: str | None, expected: str) -> bool:
    """A form's CSRF token against the session's (constant time)."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


__all__ = ["COOKIE", "MAX_AGE_S", "SIGN_IN_COOKIE", "Session", "Sessions", "same_token"]

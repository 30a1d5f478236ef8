"""Signed form tokens: CSRF protection, completion time and replay detection without cookies.

A token rides in a hidden field of the form. It holds a random nonce (which
the store keeps only as a hash, so a form submitted twice is stored once), the
time the form was issued (so the server can tell how long the respondent took
and flag a submission made faster than a person could read the questions), and
the respondent's language. It is signed with HMAC-SHA256 under a server secret
kept in the store, so forms issued before a restart still submit. Nothing in it
identifies the respondent: the nonce is random and the time is the server's.

>>> signer = FormTokens(b"k" * 32)
>>> token = signer.issue("ru", now=1_000_000)
>>> form = signer.check(token, now=1_000_125)
>>> form.language, form.age, len(form.nonce)
('ru', 125, 16)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

from volna.errors import VolnaError

#: how long a form may stay open before it must be reloaded (seconds)
DEFAULT_MAX_AGE = 24 * 3600
_VERSION = 1
_NONCE = 16
_MAC = 32
_LANG = 3  # language codes up to three letters, padded with spaces
_BODY = struct.Struct(f">BQ{_NONCE}s{_LANG}s")


class TokenError(VolnaError):
    """A form token that is missing, forged, malformed or too old."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class IssuedForm:
    """What a valid token says: its nonce, language, issue time and age in seconds."""

    nonce: bytes
    language: str
    issued: int
    age: int

    @property
    def challenge(self) -> bytes:
        """The proof-of-work challenge of this form: its nonce (random, never reused)."""
        return self.nonce


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if len(text) > 200 or not text.isascii():
        raise ValueError("too long")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_secret() -> bytes:
    """A fresh 32-byte signing secret.

    >>> len(new_secret())
    32
    """
    return secrets.token_bytes(32)


class FormTokens:
    """Issue and check the form tokens of one server (one secret).

    >>> signer = FormTokens(b"s" * 32, max_age=60)
    >>> token = signer.issue("en", now=100)
    >>> signer.check(token, now=200)
    Traceback (most recent call last):
    ...
    volna.collect.tokens.TokenError: this form was opened more than 1 minute(s) ago ...
    """

    def __init__(self, secret: bytes, *, max_age: int = DEFAULT_MAX_AGE) -> None:
        if len(secret) < 16:
            raise VolnaError("the form-token secret must be at least 16 bytes")
        self._secret = secret
        self.max_age = max_age

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, b"volna-form-token\0" + body, hashlib.sha256).digest()

    def issue(self, language: str, *, now: float | None = None) -> str:
        """A new token for a form shown in ``language`` at time ``now`` (default: now)."""
        issued = int(time.time() if now is None else now)
        lang = language.encode("ascii")[:_LANG].ljust(_LANG)
        body = _BODY.pack(_VERSION, issued, secrets.token_bytes(_NONCE), lang)
        return _b64(body + self._mac(body))

    def check(self, token: str | None, *, now: float | None = None) -> IssuedForm:
        """The form a token was issued for; :class:`TokenError` if forged, malformed or old."""
        if not token:
            raise TokenError("the form token is missing: please open the form again")
        try:
            raw = _unb64(token)
        except ValueError:
            raise TokenError("the form token is malformed: please open the form again") from None
        if len(raw) != _BODY.size + _MAC:
            raise TokenError("the form token is malformed: please open the form again")
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenError("the form token is not this server's: please open the form again")
        version, issued, nonce, lang = _BODY.unpack(body)
        if version != _VERSION:
            raise TokenError("the form token is of an unknown version")
        current = int(time.time() if now is None else now)
        age = current - issued
        if age > self.max_age:
            minutes = self.max_age // 60
            raise TokenError(
                f"this form was opened more than {minutes} minute(s) ago and has expired",
                expired=True,
            )
        return IssuedForm(nonce, lang.decode("ascii").strip(), issued, max(age, 0))


def coarse_duration(seconds: float) -> int:
    """Completion time rounded to 10 seconds: enough to screen speeders, too coarse to match logs.

    >>> coarse_duration(4), coarse_duration(125), coarse_duration(126)
    (0, 120, 130)
    """
    return round(max(seconds, 0) / 10.0) * 10

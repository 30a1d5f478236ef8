"""Bots without third parties: a global rate cap and an optional proof of work.

Neither looks at who is asking. The rate cap is one token bucket for the whole
server (no per-address buckets: the server never sees, keeps or compares
addresses). The proof of work asks the browser to find a number whose SHA-256
together with the form's challenge starts with a given count of zero bits; it
costs a person's browser a moment and a bulk sender a lot. A respondent without
JavaScript cannot compute it, so a missing proof only flags a submission.
"""

from __future__ import annotations

import hashlib
import threading
import time

#: the field of the form that must stay empty (hidden from people by CSS)
HONEYPOT_FIELD = "website"


class RateCap:
    """A token bucket shared by all clients: ``per_minute`` submissions, bursts up to ``burst``.

    >>> clock = [0.0]
    >>> cap = RateCap(60, burst=2, clock=lambda: clock[0])
    >>> cap.allow(), cap.allow(), cap.allow()
    (True, True, False)
    >>> clock[0] = 1.0  # one second later one more token has dripped in
    >>> cap.allow(), cap.allow()
    (True, False)
    """

    def __init__(self, per_minute: float, *, burst: float | None = None, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(per_minute, 1.0))
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take one token if there is one; False means "too many submissions right now"."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def leading_zero_bits(digest: bytes) -> int:
    """How many zero bits a digest starts with.

    >>> leading_zero_bits(bytes([0, 0x10, 0xFF])), leading_zero_bits(b"\\xff")
    (11, 0)
    """
    count = 0
    for byte in digest:
        if byte == 0:
            count += 8
            continue
        return count + 8 - byte.bit_length()
    return count


def check_proof(challenge: bytes, answer: str | None, bits: int) -> bool:
    """True if SHA-256(challenge || answer) starts with ``bits`` zero bits.

    ``answer`` is the decimal number form.js found, as text (at most 20 digits).

    >>> challenge = bytes(16)
    >>> answer = solve(challenge, 8)
    >>> check_proof(challenge, answer, 8), check_proof(challenge, "x" * 30, 8)
    (True, False)
    """
    if bits <= 0:
        return True
    if not answer or len(answer) > 20 or not answer.isascii() or not answer.isdigit():
        return False
    digest = hashlib.sha256(challenge + answer.encode("ascii")).digest()
    return leading_zero_bits(digest) >= bits


def solve(challenge: bytes, bits: int) -> str:
    """Find a proof (what form.js does in the browser); for tests and scripts.

    >>> check_proof(b"abc", solve(b"abc", 4), 4)
    True
    """
    n = 0
    while not check_proof(challenge, str(n), bits):
        n += 1
    return str(n)

"""HTTP basic auth against the web config's bcrypt hashes, bounded so it cannot burn the CPU.

bcrypt is slow on purpose (cost 10 is ~100 ms, cost 12 four times that), and the library
releases the GIL while it runs: unbounded, two clients guessing wrong passwords kept 1.9
cores busy. As exporter-toolkit does, checks run one at a time (a lock), so guesses cost at
most one core however many arrive; a password that verified once is answered from a cache
without bcrypt, so scrapes do not queue behind guessers. Only so many checks may wait for
bcrypt at once (half the HTTP workers, in the daemon); one more is answered 503, so that
guessers can never hold every worker and a scrape always finds one free. An unknown user is
checked against a dummy hash of the configured cost, so that it takes as long as a known
user's wrong password and timing does not tell who exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import bcrypt

from densityd.serve.http_wire import StartResponse, WSGIApp

REALM = "densityd"

_COST = re.compile(r"^\$2[abxy]\$(\d\d)\$")
_DEFAULT_COST = 10


def bcrypt_cost(hashed: str) -> int:
    """The cost (log2 rounds) of a bcrypt hash: 12 for ``$2y$12$...``."""
    match = _COST.match(hashed)
    return int(match.group(1)) if match else _DEFAULT_COST


class BcryptBusy(Exception):
    """As many checks as allowed are already waiting for bcrypt: try again later."""


class PasswordChecker:
    """bcrypt verification, one at a time, with a cache of successes so that scrapes stay fast.

    A success is remembered under a keyed hash of the user, the password and the stored hash
    (a changed hash misses the cache); failures are not, so the cache cannot be grown by
    guessing.
    """

    def __init__(self, max_entries: int = 256, max_waiting: int = 4) -> None:
        self._key = secrets.token_bytes(32)
        self._waiting = threading.BoundedSemaphore(max_waiting)
        self._ok: set[bytes] = set()
        self._max_entries = max_entries
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # held for every bcrypt call: at most one core
        self._dummies: dict[int, bytes] = {}

    def check(self, users: Mapping[str, str], user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s; ``BcryptBusy`` when too many checks wait."""
        hashed = users.get(user)
        token = hmac.new(
            self._key,
            b"\0".join((user.encode(), (hashed or "").encode(), password.encode())),
            hashlib.sha256,
        ).digest()
        if hashed is not None:
            with self._cache_lock:
                if token in self._ok:
                    return True
        # Refused alike for known and unknown users, so being busy tells nothing of who exists.
        if not self._waiting.acquire(blocking=False):
            raise BcryptBusy
        try:
            with self._bcrypt_lock:
                stored = hashed.encode() if hashed is not None else self._dummy(users)
                try:
                    ok = bcrypt.checkpw(password.encode(), stored)
                except ValueError:
                    ok = False
        finally:
            self._waiting.release()
        if ok and hashed is not None:
            with self._cache_lock:
                if len(self._ok) >= self._max_entries:
                    self._ok.clear()
                self._ok.add(token)
        return ok and hashed is not None

    def _dummy(self, users: Mapping[str, str]) -> bytes:
        """A hash nobody's password matches, as costly as the dearest configured one.

        The dearest, so that a quick answer never means "no such user" (with mixed costs a
        cheap user still answers faster; give every user the same cost). Made once per cost,
        under the bcrypt lock, so making it is bounded like a check.
        """
        cost = max((bcrypt_cost(h) for h in users.values()), default=_DEFAULT_COST)
        if cost not in self._dummies:
            self._dummies[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        return self._dummies[cost]


def basic_credentials(header: str) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header, None if it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


# /healthz answers only "ok" or how long ago the last pass was: nothing about workloads or
# the host. Open, a health check (the image's HEALTHCHECK, a load balancer) needs no password,
# which it could only get from a file beside the hashes; exporter-toolkit guards every path,
# so this is a deliberate difference. TLS, and a client certificate with mutual TLS, still
# apply: they are the connection's, before any path is known.
OPEN_PATHS = frozenset({"/healthz"})


def require_basic_auth(
    app: WSGIApp,
    users: Callable[[], Mapping[str, str]],
    checker: PasswordChecker,
    open_paths: frozenset[str] = OPEN_PATHS,
) -> WSGIApp:
    """``app`` behind basic auth on every path but ``open_paths``, while ``users()`` is not
    empty."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        current = users()
        if not current or environ.get("PATH_INFO") in open_paths:
            return app(environ, start_response)
        credentials = basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        try:
            if credentials is not None and checker.check(current, *credentials):
                return app(environ, start_response)
        except BcryptBusy:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
            )
            return [b"too many password checks under way; try again later\n"]
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", f'Basic realm="{REALM}"'),
            ],
        )
        return [b"Unauthorized\n"]

    return guarded

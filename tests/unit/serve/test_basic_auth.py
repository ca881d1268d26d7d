"""Basic auth: bcrypt one check at a time with a cache of successes, unknown users as costly."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import bcrypt
import pytest

from densityd.serve.basic_auth import (
    BcryptBusy,
    PasswordChecker,
    basic_credentials,
    bcrypt_cost,
    require_basic_auth,
)

# Cost 4, the minimum: these tests check behaviour, not bcrypt's slowness.
ALICE_HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


def test_password_checker_verifies_and_caches_successes_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = PasswordChecker()
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    users = {"alice": ALICE_HASH}
    assert checker.check(users, "alice", "secret")
    assert checker.check(users, "alice", "secret")
    assert len(calls) == 1, "a remembered success must not run bcrypt again"
    assert not checker.check(users, "alice", "wrong")
    assert not checker.check(users, "alice", "wrong")
    assert len(calls) == 3, "failures are never cached"
    assert not checker.check(users, "mallory", "secret")
    assert len(calls) == 4, "an unknown user still pays one bcrypt"
    # A new hash for alice (a changed password) must not be satisfied from the cache.
    changed = {"alice": bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=4)).decode()}
    assert not checker.check(changed, "alice", "secret")
    assert checker.check(changed, "alice", "other")


def test_a_2y_hash_from_htpasswd_verifies() -> None:
    hashed = ALICE_HASH.replace("$2b$", "$2y$", 1)
    assert PasswordChecker().check({"alice": hashed}, "alice", "secret")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"alice:se:cret").decode(), ("alice", "se:cret")),
        ("basic " + base64.b64encode(b"alice:").decode(), ("alice", "")),
        ("Basic " + base64.b64encode(b"alice").decode(), None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("", None),
    ],
)
def test_basic_credentials(header: str, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


def call(
    app: Any, authorization: str | None, path: str = "/metrics"
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"metrics\n"]


def test_basic_auth_guards_every_request() -> None:
    users = {"alice": ALICE_HASH}
    app = require_basic_auth(inner, lambda: users, PasswordChecker())
    good = "Basic " + base64.b64encode(b"alice:secret").decode()
    bad = "Basic " + base64.b64encode(b"alice:nope").decode()
    for authorization in (None, bad, "Bearer x"):
        status, headers, body = call(app, authorization)
        assert status == "401 Unauthorized"
        assert headers["WWW-Authenticate"] == 'Basic realm="densityd"'
        assert body != b"metrics\n"
    assert call(app, good)[0] == "200 OK"
    for path in ("/", "/api/v1/plan", "/healthz/", "/metrics"):
        assert call(app, None, path)[0] == "401 Unauthorized", path
    assert call(app, None, "/healthz")[0] == "200 OK"  # for health checks; it tells nothing
    users.clear()  # no users configured (any more): no auth
    assert call(app, None)[0] == "200 OK"


def test_bcrypt_checks_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = [0], [0]
    guard = threading.Lock()
    real = bcrypt.checkpw

    def watched(password: bytes, hashed: bytes) -> bool:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)  # long enough for the other threads to pile in, if they could
        try:
            return real(password, hashed)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(bcrypt, "checkpw", watched)
    checker = PasswordChecker(max_waiting=8)
    users = {"alice": ALICE_HASH}
    guesses = [
        threading.Thread(target=checker.check, args=(users, user, "wrong"))
        for user in ("alice", "mallory") * 4
    ]
    for thread in guesses:
        thread.start()
    for thread in guesses:
        thread.join()
    assert most[0] == 1


def test_an_unknown_user_is_checked_against_a_hash_of_the_configured_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    costs: list[int] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        costs.append(bcrypt_cost(hashed.decode()))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    checker = PasswordChecker()
    cheap = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=5)).decode()
    assert not checker.check({"alice": ALICE_HASH, "bob": cheap}, "mallory", "secret")
    assert not checker.check({"alice": ALICE_HASH}, "mallory", "secret")
    assert costs == [5, 4]  # the dearest configured cost, whatever it is


def test_bcrypt_cost() -> None:
    assert bcrypt_cost("$2y$12$" + "a" * 53) == 12
    assert bcrypt_cost(ALICE_HASH) == 4


def test_past_max_waiting_a_check_is_refused_as_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    real = bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        entered.set()
        release.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", held)
    checker = PasswordChecker(max_waiting=1)
    users = {"alice": ALICE_HASH}
    app = require_basic_auth(inner, lambda: users, checker)
    first = threading.Thread(target=checker.check, args=(users, "alice", "wrong"))
    first.start()
    try:
        assert entered.wait(10)
        for user in ("alice", "mallory"):  # alike for known and unknown users
            with pytest.raises(BcryptBusy):
                checker.check(users, user, "wrong")
        status, headers, _body = call(app, "Basic " + base64.b64encode(b"alice:x").decode())
        assert status == "503 Service Unavailable"
        assert headers["Retry-After"] == "1"
    finally:
        release.set()
        first.join()
    assert checker.check(users, "alice", "secret")  # free again

"""Basic auth on the real daemon with cost-12 hashes: what wrong guesses cost, and whom.

Issue 13 item 5: two clients guessing kept 1.9 cores busy (bcrypt releases the GIL and ran
unbounded), and an unknown user answered about 4x faster than a real one (the dummy hash had
cost 10). CPU time comes from ``/proc/PID/stat``; every hash is a real bcrypt hash.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.integration.backends import Daemon
from tests.integration.test_web_limits import NO_BACKENDS, cpu_seconds

pytestmark = pytest.mark.integration

COST = 12


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=COST)).decode()


def auth_daemon(start_daemon: Callable[..., Daemon], tmp_path: Path, alice_hash: str) -> Daemon:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{alice_hash}'\n")
    return start_daemon(
        *NO_BACKENDS, "--web-config-file", str(path), probe={"auth": ("alice", "secret")}
    )


def seconds_to_refuse(daemon: Daemon, user: str) -> float:
    begin = time.monotonic()
    response = requests.get(f"{daemon.url}/metrics", auth=(user, "wrong"), timeout=30)
    elapsed = time.monotonic() - begin
    assert response.status_code == 401
    return elapsed


def test_an_unknown_user_takes_as_long_as_a_known_one(
    start_daemon: Callable[..., Daemon], tmp_path: Path, alice_hash: str
) -> None:
    daemon = auth_daemon(start_daemon, tmp_path, alice_hash)
    seconds_to_refuse(daemon, "mallory")  # the first unknown user also makes the dummy hash
    known, unknown = [], []
    for _ in range(5):
        known.append(seconds_to_refuse(daemon, "alice"))
        unknown.append(seconds_to_refuse(daemon, "mallory"))
    ratio = statistics.median(unknown) / statistics.median(known)
    # Same cost, same work: within 30% either way (the old dummy of cost 10 gave about 0.25).
    assert 0.7 < ratio < 1.3, (ratio, known, unknown)


def test_concurrent_wrong_passwords_use_at_most_one_core(
    start_daemon: Callable[..., Daemon], tmp_path: Path, alice_hash: str
) -> None:
    daemon = auth_daemon(start_daemon, tmp_path, alice_hash)
    assert requests.get(f"{daemon.url}/metrics", auth=("alice", "secret"), timeout=30).ok
    stop = threading.Event()
    statuses: list[int] = []

    def guess(user: str) -> None:
        while not stop.is_set():
            response = requests.get(f"{daemon.url}/metrics", auth=(user, "wrong"), timeout=30)
            statuses.append(response.status_code)

    # More guessers than workers (8): at most half the workers wait for bcrypt, the rest of
    # the guesses are answered 503, and a worker stays free for the scrape below.
    guessers = [threading.Thread(target=guess, args=(u,)) for u in ("alice", "mallory") * 6]
    for thread in guessers:
        thread.start()
    try:
        time.sleep(0.5)  # all of them in flight
        before, begin = cpu_seconds(daemon.process.pid), time.monotonic()
        time.sleep(4)
        cores = (cpu_seconds(daemon.process.pid) - before) / (time.monotonic() - begin)
        # A remembered password is answered without bcrypt, so scrapes do not queue behind.
        scrape_began = time.monotonic()
        scrape = requests.get(f"{daemon.url}/metrics", auth=("alice", "secret"), timeout=30)
        scrape_took = time.monotonic() - scrape_began
    finally:
        stop.set()
        for thread in guessers:
            thread.join()
    assert set(statuses) <= {401, 503}, set(statuses)
    assert statuses.count(401) >= 5, statuses.count(401)
    # Unbounded, twelve guessers take every core (1.9 of 2 in the issue); one at a time, one
    # core and a little for the HTTP side. The lower bound shows bcrypt really ran; it is low
    # because a machine busy with other work gives the daemon far less than its one core
    # (0.29 measured with a benchmark running beside), and the 401s above show it ran too.
    assert 0.1 < cores < 1.25, f"{cores:.2f} cores"
    assert scrape.status_code == 200
    assert scrape_took < 1.0, scrape_took

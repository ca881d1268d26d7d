"""A Unix-socket proxy in front of the Docker socket: records each request, can slow some down.

Between densityd and the real engine, it shows which requests densityd makes (only GETs, the
README's list) and stands in for a slow engine (a writable-layer scan that takes a while).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"


class RecordingProxy:
    """A Unix-socket proxy in front of the Docker socket that records each request line."""

    def __init__(
        self,
        path: Path,
        upstream: str = DOCKER_SOCKET,
        delay: Callable[[str], float] = lambda _path: 0.0,
    ) -> None:
        """``delay``: seconds to hold each request, by its path, before forwarding it (a
        slow engine)."""
        self.path = path
        self.upstream = upstream
        self._delay = delay
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The ``--docker-host`` value that reaches the engine through this proxy."""
        return f"unix://{self.path}"

    def methods(self) -> set[str]:
        """Every HTTP method seen so far."""
        with self._lock:
            return {method for method, _ in self.requests}

    def endpoints(self) -> set[str]:
        """The paths seen, without the API version prefix, query or container IDs."""
        with self._lock:
            paths = [path for _, path in self.requests]
        found = set()
        for path in paths:
            path = re.sub(r"^/v[0-9.]+", "", path.partition("?")[0])
            found.add(re.sub(r"^/containers/[0-9a-f]{64}/", "/containers/{id}/", path))
        return found

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Forward the client's requests one by one, recording each request line."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                with self._lock:
                    self.requests.append((method, path))
                time.sleep(self._delay(path))
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buffer) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                upstream.sendall(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
        except OSError:
            return
        finally:
            upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            target.close()

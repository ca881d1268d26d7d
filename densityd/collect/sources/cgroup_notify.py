"""Wake on a change to a cgroup file the kernel announces (inotify), on a thread of its own.

The kernel notifies a change to some cgroup v2 files as a modification of the file:
``memory.events`` when an OOM kill (or ``oom``, ``max``, ``high``) is counted, ``cgroup.events``
when the cgroup empties. That is the moment to read them: a container OOM-killed and removed
at once (``docker run --rm``) takes its cgroup, and its counter, with it, often before the
engine's ``die`` event reaches densityd (with the systemd driver, systemd removes the scope as
soon as it is empty). A pass every few seconds sees such a container never again; a read at
the kernel's notice sees the kill while the killed process is still being torn down.

The kernel spaces one file's notices at least 10 ms apart and sends the one held back when
the time is up, so the last change is always announced; reading the file at each notice sees
it. Watches are kept in step with the workload table by ``follow``. A watch whose file went
away ends by itself (``IN_IGNORED``) and is made again by the next ``follow`` that still
names it: a container restarted in place gets a new cgroup at the same path. Where inotify
cannot be had (no instance or watch left under the ``fs.inotify`` limits), the reason is
logged once and the files are read at each pass as before: a kill is then counted late or,
for a container removed between two passes, only through the engine.

The cost: one read of the file per notice. ``memory.events`` also changes at every ``max``
and ``high`` event, so a container that sits at its memory limit is read up to 100 times a
second (the kernel's spacing), some 20 µs each: a few tenths of a percent of a core per such
container, and nothing for the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Mapping

import inotify_simple

log = logging.getLogger(__name__)

# A modification is what the kernel sends (kernfs_notify); IGNORED ends a watch.
WATCH_MASK = inotify_simple.flags.MODIFY
# How long ``close`` waits for the thread, which it wakes at once.
CLOSE_WAIT_SECONDS = 2.0

OnChange = Callable[[str, str], None]
"""Called with a watched key and its file's path, on the notifier's thread."""


class CgroupFileNotifier:
    """Calls ``on_change(key, path)`` when the kernel announces a change to a watched file."""

    def __init__(self, on_change: OnChange, name: str) -> None:
        self._on_change = on_change
        self._name = name
        self._lock = threading.Lock()  # ``follow`` runs on the pass, reads on the thread
        self._inotify: inotify_simple.INotify | None = None
        self._unavailable: str | None = None
        self._paths: dict[str, str] = {}  # key -> the file watched for it
        self._watches: dict[str, int] = {}  # key -> its watch descriptor
        self._keys: dict[int, str] = {}  # watch descriptor -> key
        self._stopping = threading.Event()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC)  # written by ``close`` to end the thread
        self._thread: threading.Thread | None = None

    @property
    def unavailable(self) -> str | None:
        """Why no file is watched, or ``None`` while notices can be had."""
        return self._unavailable

    def watched(self) -> frozenset[str]:
        """The keys whose files are watched now."""
        with self._lock:
            return frozenset(self._watches)

    def follow(self, paths: Mapping[str, str]) -> None:
        """Watch exactly ``paths`` (key -> file): add what is new, drop what is gone. Cheap
        when nothing changed, as at a steady pass."""
        with self._lock:
            if paths == self._paths or self._unavailable is not None:
                return
            inotify = self._start()
            if inotify is None:
                return
            for key in [k for k in self._watches if self._paths.get(k) != paths.get(k)]:
                self._drop(inotify, key)
            for key, path in paths.items():
                if key not in self._watches:
                    self._add(inotify, key, path)
            self._paths = dict(paths)

    def close(self) -> None:
        """Stop the thread and close the inotify instance (its watches with it)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.eventfd_write(self._wake, 1)
        thread = self._thread
        if thread is not None:
            thread.join(timeout=CLOSE_WAIT_SECONDS)
        os.close(self._wake)
        with self._lock:
            inotify, self._inotify = self._inotify, None
            if inotify is not None:
                inotify.close()
            self._watches.clear()
            self._keys.clear()
            self._paths = {}

    def _start(self) -> inotify_simple.INotify | None:
        if self._inotify is None and not self._stopping.is_set():
            try:
                self._inotify = inotify_simple.INotify()
            except OSError as exc:
                self._give_up(f"no inotify instance: {exc}")
                return None
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self._inotify

    def _add(self, inotify: inotify_simple.INotify, key: str, path: str) -> None:
        try:
            descriptor = inotify.add_watch(path, WATCH_MASK)
        except FileNotFoundError:
            return  # the cgroup went away since it was found: nothing left to watch
        except OSError as exc:  # ENOSPC: fs.inotify.max_user_watches reached
            self._give_up(f"cannot watch {path}: {exc}")
            return
        self._watches[key] = descriptor
        self._keys[descriptor] = key

    def _drop(self, inotify: inotify_simple.INotify, key: str) -> None:
        descriptor = self._watches.pop(key)
        if self._keys.pop(descriptor, None) is not None:
            # The file may be gone: then the kernel ended the watch already.
            with contextlib.suppress(OSError):
                inotify.rm_watch(descriptor)

    def _give_up(self, reason: str) -> None:
        """Stop watching for good (the passes still read the files) and say so once."""
        if self._unavailable is None:
            self._unavailable = reason
            log.warning(
                "%s: %s; cgroup files are read at each pass only (raise fs.inotify limits)",
                self._name,
                reason,
            )

    def _run(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        poller = select.poll()
        poller.register(inotify.fileno(), select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}  # sleeps until a notice or ``close``
            if self._wake in ready or self._stopping.is_set():
                return
            events = inotify.read(timeout=0)
            changed: dict[str, str] = {}
            with self._lock:
                for event in events:
                    key = self._keys.get(event.wd)
                    if key is None:
                        continue
                    if event.mask & inotify_simple.flags.IGNORED:
                        # The file is gone and the kernel ended the watch: forget it, so
                        # that a cgroup made again at the same path is watched again.
                        del self._keys[event.wd]
                        self._watches.pop(key, None)
                        self._paths.pop(key, None)
                    else:
                        changed[key] = self._paths[key]
            for key, path in changed.items():
                try:
                    self._on_change(key, path)
                except Exception:  # one bad read must not end the notices
                    log.exception("%s: handling a change to %s failed", self._name, path)

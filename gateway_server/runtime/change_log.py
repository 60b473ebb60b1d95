"""Which process writes the log line of a route change, so that a server logs each change once.

Under ``serve --workers N`` every worker has its own route table and applies every change, so
without care each would log it: N lines for one edit of the config file, and after every change
made through the admin API a second line (``reloaded: added``) from the file watchers, which see
the file the admin API wrote. The rules (docs/observability.md, "Reload and admin lines"):

- a change made through the admin API is logged by the worker that made it, with the name of the
  gateway key that made it. Before that worker replaces the config file, it writes the hash of the
  new content to a journal (:meth:`ChangeLog.mark`); every watcher that then loads that content
  (the same worker's included) finds it there and applies it at ``debug`` level. With
  ``server.shared_state`` the mark is the overlay version the change made, written as soon as
  Redis answers (a watcher of the same server that polls in between logs it a second time: a
  window of one Redis round trip);
- any other change (an operator's edit of the file, a secret file rotated, a change another
  server made to the shared routes) and a file that does not load are logged by one worker, the
  *owner*: the one that holds an exclusive ``flock`` on ``changes.lock`` in the server's directory
  (the one the supervisor makes for the metrics, ``GATEWAYCTL_METRICS_DIR``). The others apply it
  at ``debug`` level. The lock goes with its holder: if the owner dies, the next worker to see a
  change takes it.

With one process (no directory), that process is the owner and the journal is in memory.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import os

from gateway_server.metrics_store import METRICS_DIR_ENV

__all__ = ["ChangeLog", "content_token", "version_token"]

LOCK_FILE = "changes.lock"
JOURNAL_FILE = "changes.journal"
_KEEP = 64  # marks looked at: far more than the changes a watcher can miss between two looks
_LINE = 72  # the longest journal line ("sha256:" + 64 hex digits + newline)


def content_token(text: str | bytes) -> str:
    """The mark of a config file's content (what the admin API wrote, what a watcher loaded)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def version_token(version: int) -> str:
    """The mark of a version of the shared (Redis) route overlay."""
    return f"shared:{version}"


class ChangeLog:
    """The owner lock and the journal of changes already logged, for the processes of one server."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self._lock: int | None = None  # the descriptor holding the owner lock
        self._marks: collections.deque[str] = collections.deque(maxlen=_KEEP)

    @classmethod
    def from_env(cls) -> ChangeLog:
        """The server's (a worker of ``serve --workers N``), or one of a single process."""
        return cls(os.environ.get(METRICS_DIR_ENV) or None)

    def owner(self) -> bool:
        """True if this process logs the changes nobody logged yet (it takes the lock if free)."""
        if self.directory is None or self._lock is not None:
            return True
        try:
            fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # no way to agree (the directory is gone): a duplicate beats a lost line
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock = fd
        return True

    def mark(self, token: str) -> None:
        """The change ``token`` names is logged by this process: the others stay quiet about it."""
        self._marks.append(token)
        if self.directory is None:
            return
        try:  # one short O_APPEND write: lines of several writers never interleave
            fd = os.open(
                os.path.join(self.directory, JOURNAL_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            try:
                os.write(fd, f"{token}\n".encode("ascii"))
            finally:
                os.close(fd)
        except OSError:  # the others will log it too: a duplicate, not a lost line
            pass

    def marked(self, token: str | None) -> bool:
        """True if a process of this server already logged the change ``token`` names."""
        if token is None:
            return False
        if token in self._marks:
            return True
        if self.directory is None:
            return False
        try:
            with open(os.path.join(self.directory, JOURNAL_FILE), "rb") as journal:
                size = journal.seek(0, os.SEEK_END)
                journal.seek(max(0, size - _KEEP * _LINE))
                tail = journal.read().decode("ascii", "replace").splitlines()
        except OSError:
            return False
        return token in tail[-_KEEP:]

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock: another worker may own the lines now
            self._lock = None

"""Hot reload: every serving process watches its config file and swaps its route table in place.

The pure part, :func:`diff_routes` and :class:`RouteChanges`, turns old and new routes into the one
log line an operator reads. The watching part, :class:`ConfigWatcher`, runs as a task in the app's
lifespan (so each of ``--workers N`` processes has its own) and polls about once a second:

- it resolves the config path to its real path and hashes the bytes there, plus every file a
  secret was read from. Any change to the resolved path or the content counts, so it catches an
  in-place write, an editor's write-and-rename, and the Kubernetes ``..data`` symlink swap used for
  ConfigMap and Secret volumes (no event ever names the config path in that case; MLflow misses it);
- a change is acted on once it has held for one more look (so within about two seconds), which
  keeps a file caught halfway through an in-place write from ever being loaded;
- it then validates the whole file (re-resolving ``$ENV`` and file secrets) off the event
  loop and hands it to the route table (``RouteTable.apply``, ``runtime/table.py``), which swaps
  the served set in one step. A request keeps the entry it resolved, so in-flight requests and
  streams finish on the config they started with;
- a bad or missing file keeps the current routes and logs every problem, once per distinct content;
- under ``--workers N`` every worker watches and reloads, but one line is logged per change for
  the whole server (``runtime/change_log.py``): a file the admin API wrote was logged by the worker
  that made the change, anything else by the server's one owner; the others log at ``debug``.

Secret files are hashed again only when their size, modification time or inode changed (a
``stat`` per look otherwise), so a large one costs nothing while it stays put.

Polling rather than inotify (``watchfiles``): a realpath and a hash of a few KB per second
cost nothing, need no new dependency, work where inotify does not (network and overlay file
systems, exhausted watch limits) and need no re-arming when a symlink starts pointing elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress

from gateway_server.config import GatewayConfig, parse_config
from gateway_server.errors import ConfigError
from gateway_server.limits import check_workers, served_workers
from gateway_server.runtime.change_log import ChangeLog
from gateway_server.runtime.changes import RouteChanges, diff_routes

# Called with each new, validated config file: ``RouteTable.apply(config, reason, quiet=, token=,
# changed_by=)``.
Apply = Callable[..., RouteChanges]

__all__ = [
    "RELOAD_INTERVAL",
    "ConfigWatcher",
    "RouteChanges",
    "diff_routes",
    "watch_config",
]  # the diff: runtime/changes.py

logger = logging.getLogger("gateway_server.reload")

RELOAD_INTERVAL = 1.0  # seconds between two looks at the config file

Fingerprint = tuple[tuple[str, str | None, str | None], ...]  # (path, real path, sha256) per file


# ---------------------------------------------------------------- watching


def secret_files(config: GatewayConfig) -> list[str]:
    """Paths that secrets of ``config`` were read from (a rotated Secret volume triggers a reload)."""
    secrets = [secret for route in config.routes for secret in route.secrets()]
    secrets.extend(
        secret for credential in config.credentials.values() for secret in credential.config.secrets()
    )
    if config.auth is not None:
        secrets.extend(key.key for key in config.auth.keys if key.key is not None)
    paths = {os.path.expanduser(secret.source) for secret in secrets if secret.kind == "file"}
    return sorted(paths)


# real path -> ((size, mtime_ns, inode), sha256) of the last time the file was hashed
DigestCache = dict[str, tuple[tuple[int, int, int], str]]


def fingerprint(paths: Iterable[str], cache: DigestCache | None = None) -> Fingerprint:
    """Real path and content hash of each file (``None`` for one that cannot be read).

    With a ``cache``, a file whose size, modification time and inode did not change since it was
    last hashed is not read again: a secret file of 200 MB costs one ``stat`` per look, not a hash.
    (A rotation always changes one of the three: a Secret volume swaps a symlink to a new inode,
    ``cp``/an editor changes the mtime.)"""
    result: list[tuple[str, str | None, str | None]] = []
    for path in paths:
        try:
            real = os.path.realpath(path)
            result.append((path, real, _digest(real, cache)))
        except OSError:
            result.append((path, None, None))
    return tuple(result)


def _digest(real: str, cache: DigestCache | None) -> str:
    with open(real, "rb") as file:
        stat = os.fstat(file.fileno())
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if cache is not None:
            hit = cache.get(real)
            if hit is not None and hit[0] == key:
                return hit[1]
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    if cache is not None:
        cache[real] = (key, digest)
    return digest


class ConfigWatcher:
    """Polls ``path`` (and the secret files of the config it last loaded); on a change, validates
    the file and hands it to ``apply`` (the route table's, which does the swap and the log line)."""

    def __init__(
        self,
        path: str,
        config: GatewayConfig,
        apply: Apply,
        *,
        interval: float = RELOAD_INTERVAL,
        changes: ChangeLog | None = None,
    ) -> None:
        self.path = path
        self.changes = changes if changes is not None else ChangeLog()  # who logs a rejected file
        self.config = config  # the file as last loaded: its secret files are watched too
        self._apply = apply
        self.interval = interval
        self.reloads = 0  # successful swaps and rejected files, for tests and diagnostics
        self.failures = 0
        self._seen: Fingerprint | None = None  # None: the first look always validates the file
        self._pending: Fingerprint | None = None  # a change seen once, acted on if it holds
        self._digests: DigestCache = {}  # secret files: hashed again only when their stat changes

    def _load_if_changed(self) -> tuple[Fingerprint, GatewayConfig | ConfigError | None]:
        """Runs in a worker thread: file I/O and validation stay off the event loop.

        The config file is read once and that same text is hashed and parsed, so the fingerprint
        always describes what was loaded. A change is acted on once it has held for one interval:
        a file caught halfway through an in-place write is never loaded.
        """
        watched = fingerprint(secret_files(self.config), self._digests)
        try:
            real = os.path.realpath(self.path)
            with open(real, "rb") as file:
                data = file.read()
        except OSError as exc:
            seen = ((self.path, None, None), *watched)
            if seen == self._seen or self._settling(seen):
                return seen, None
            problem = f"cannot read the config file: {exc.strerror or exc}"
            return seen, ConfigError(problem, path=self.path)
        seen = ((self.path, real, hashlib.sha256(data).hexdigest()), *watched)
        if seen == self._seen or self._settling(seen):
            return seen, None
        try:
            config = parse_config(data.decode("utf-8"), self.path)
            check_workers(config, served_workers())  # a limit per worker would multiply it
        except ConfigError as exc:
            return seen, exc
        except UnicodeDecodeError:
            return seen, ConfigError("the config file is not UTF-8 text", path=self.path)
        return (seen[0], *fingerprint(secret_files(config), self._digests)), config

    def _settling(self, seen: Fingerprint) -> bool:
        """True the first time a new fingerprint is seen (it is remembered; the next look acts)."""
        if self._seen is None or seen == self._pending:
            return False
        self._pending = seen
        return True

    async def check(self) -> RouteChanges | None:
        """One look: reload if the file (or a secret file) changed and has held since the last look."""
        first = self._seen is None
        before = self._seen
        seen, outcome = await asyncio.to_thread(self._load_if_changed)
        if seen == self._pending and outcome is None:
            return None  # changed, settling
        self._seen, self._pending = seen, None
        if outcome is None:
            return None
        if isinstance(outcome, ConfigError):
            self.failures += 1
            logger.log(
                logging.ERROR if self.changes.owner() else logging.DEBUG,  # one line per server
                "config %s not reloaded, keeping the current %d route(s); every problem:\n%s",
                self.path,
                len(self.config.routes),
                outcome,
            )
            return None
        # Only the file's own content changed (not a secret file): the admin API may have written it.
        edited = before is None or before[0] != seen[0]
        only_file = edited and before is not None and before[1:] == seen[1:]
        token = content_token_of(seen) if only_file else None
        return self.apply(outcome, quiet=first, token=token, secret=not edited)

    def apply(
        self, config: GatewayConfig, *, quiet: bool = False, token: str | None = None, secret: bool = False
    ) -> RouteChanges:
        """Serve ``config`` (already validated). Requests in flight keep the entries they hold.
        ``secret``: only a secret file changed; ``token``: the file's content mark (change_log.py)."""
        what = "a secret file changed" if secret else "changed in the file"
        changes = self._apply(
            config,
            f"config {self.path} reloaded ({what})",
            quiet=quiet,
            token=token,
            changed_by="secret-file" if secret else "file",
        )
        self.config = config
        self.reloads += 1
        return changes

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the process edge of a background task: log, keep watching
                logger.exception("config watcher for %s failed; will look again", self.path)
            await asyncio.sleep(self.interval)


def content_token_of(seen: Fingerprint) -> str | None:
    """The content mark of the config file in ``seen`` (its sha256, as ``change_log.content_token``)."""
    digest = seen[0][2]
    return None if digest is None else f"sha256:{digest}"


@asynccontextmanager
async def watch_config(
    path: str | None,
    config: GatewayConfig,
    apply: Apply,
    interval: float | None,
    changes: ChangeLog | None = None,
) -> AsyncIterator[ConfigWatcher | None]:
    """For the app's lifespan: watch ``path`` every ``interval`` s (``None``: don't), starting from
    ``config`` (its content when the app was built). (The routes created and deleted through Redis
    are watched by ``runtime/redis_store.py``; the app enters both.)"""
    if not interval or path is None:
        yield None
        return
    watcher = ConfigWatcher(os.path.abspath(path), config, apply, interval=interval, changes=changes)
    task = asyncio.create_task(watcher.run(), name=f"gatewayctl-reload:{path}")
    try:
        yield watcher
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

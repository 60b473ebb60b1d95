"""Write route changes back to the config file, keeping everything else the operator wrote.

The file is edited as a round-trip document (ruamel.yaml): comments, key order, quoting and the
other routes stay as they were; only the added or removed route entry changes. A new route is
written exactly as it was given (a ``$OPENAI_API_KEY`` reference stays a reference). Before the
file is replaced, the new text is validated as a whole by the same loader the server starts with,
so a change never leaves a file the gateway cannot load. The write is atomic: a temporary file in
the same directory, flushed and fsynced, then ``os.replace`` (and an fsync of the directory).

The functions here do blocking file I/O; the server calls them off the event loop.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from gateway_server.config import parse_config
from gateway_server.errors import ConfigError, ConfigNotPersistableError, RouteExistsError, RouteNotFoundError

__all__ = ["ConfigNotPersistableError", "add_route", "atomic_write", "remove_route"]

BeforeWrite = Callable[[str], None]  # called with the new text just before it replaces the file


def add_route(path: str | Path, route: Mapping[str, Any], before_write: BeforeWrite | None = None) -> None:
    """Append ``route`` (already validated) to the file's ``routes:`` (or ``endpoints:``) list.
    ``before_write`` is called with the new text just before it replaces the file."""
    name = route["name"]

    def change(routes: CommentedSeq) -> None:
        if any(_name_of(entry) == name for entry in routes):
            raise RouteExistsError(name)
        routes.append(_to_commented(route))

    _edit(path, change, before_write)


def remove_route(path: str | Path, name: str, before_write: BeforeWrite | None = None) -> None:
    """Remove the route called ``name`` from the file; RouteNotFoundError if the file lacks it."""

    def change(routes: CommentedSeq) -> None:
        for index, entry in enumerate(routes):
            if _name_of(entry) == name:
                del routes[index]
                return
        raise RouteNotFoundError(name)

    _edit(path, change, before_write)


def atomic_write(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never a mix."""
    target = Path(path)
    directory = target.parent
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


# ---------------------------------------------------------------- internals


def _edit(
    path: str | Path, change: Callable[[CommentedSeq], None], before_write: BeforeWrite | None = None
) -> None:
    path_str = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", path=path_str) from None
    yaml, document = _load(text, path_str)
    top = "endpoints" if "endpoints" in document and "routes" not in document else "routes"
    routes = document.get(top)
    if routes is None:
        routes = document[top] = CommentedSeq()
    if not isinstance(routes, CommentedSeq):
        raise ConfigError(f"'{top}' is not a list; fix the config file first", path=path_str)
    change(routes)
    out = io.StringIO()
    yaml.dump(document, out)
    new_text = out.getvalue()
    parse_config(new_text, path_str)  # never write a file the gateway could not load
    if before_write is not None:
        before_write(new_text)
    atomic_write(path, new_text)


def _load(text: str, path: str) -> tuple[YAML, CommentedMap]:
    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the operator's long lines
    try:
        # The guess is the indent of a list item's content and the dash's offset; the two common
        # styles ("- name" flush under the key, or indented by 2) both come out right this way.
        _, item_indent, dash_offset = load_yaml_guess_indent(text)
        document = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"the config file is not valid YAML: {exc}", path=path) from None
    if not isinstance(document, CommentedMap):
        raise ConfigError("the config file must be a mapping with a 'routes:' list", path=path)
    item_indent = item_indent or 2
    dash_offset = dash_offset or 0
    mapping_indent = max(2, item_indent - dash_offset)
    yaml.indent(mapping=mapping_indent, sequence=item_indent, offset=dash_offset)
    return yaml, document


def _name_of(entry: Any) -> Any:
    return entry.get("name") if isinstance(entry, Mapping) else None


def _to_commented(value: Any) -> Any:
    """Plain dicts and lists as round-trip nodes, so the new route is written in block style."""
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _to_commented(item)
        return node
    if isinstance(value, list | tuple):
        return CommentedSeq(_to_commented(item) for item in value)
    return value


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Secrets from config: ``$ENV`` reference, a path to a file, or a literal, held in a masked type.

A :class:`Secret` never shows its value in ``repr``/``str``/``format``, in a pydantic dump or in a
pickle; the value is read only by ``.get()``, at the one place that builds the upstream request.
``.source`` is what the config said (``$OPENAI_API_KEY`` stays a reference when a route is written
back to disk).

References are unambiguous:

- ``$NAME`` / ``${NAME}``: the environment variable; unset is an error naming it (never a value);
- a value that looks like a path (``/``, ``./``, ``../``, ``~/``) must be a readable file, whose
  content (stripped) is the secret; a missing or unreadable file is an error, never a literal key;
- a name of an existing file (``key.txt``, MLflow's rule) is read the same way;
- anything else is the literal key. One that looks like an environment variable's name
  (``OPENAI_API_KEY``) is most likely a forgotten ``$``: :func:`env_name_hint` says so, and the
  config loader turns it into a warning.

``with unresolved():`` validates references without reading them (``gatewayctl validate
--no-secrets``, for CI jobs that hold no production keys): the secret's value is then a placeholder
that is never sent anywhere.

Redaction (:func:`redact`, :func:`scrub`) is applied at one choke point, the upstream client
(``UpstreamClient``): every error built from an upstream's words passes through it, streams
included (docs/security.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

if TYPE_CHECKING:
    from gateway_server.errors import GatewayError

__all__ = [
    "MASK",
    "Secret",
    "env_name_hint",
    "escape_control",
    "is_path_reference",
    "literal_only",
    "redact",
    "resolve_secret",
    "scrub",
    "unresolved",
]

MASK = "**********"

_PATH_PREFIXES = ("/", "./", "../", "~/")
# An environment variable's conventional name: upper case, digits, underscores, at least one
# underscore (OPENAI_API_KEY); a real key is almost never spelled like that.
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")

# How references are treated: "resolve" (serve, validate), "unresolved" (validate --no-secrets),
# "literal" (routes created at run time: only a key given inline is accepted).
_mode: ContextVar[str] = ContextVar("gateway_secret_mode", default="resolve")


class Secret:
    __slots__ = ("_value", "kind", "source")

    def __init__(self, value: str, source: str | None = None, kind: str = "literal") -> None:
        self._value = value
        # What the config said: an env reference or a path are safe to write back; a literal is
        # itself secret, so it is kept only to persist the route as the operator wrote it.
        self.source = source if source is not None else value
        self.kind = kind  # "env", "file" or "literal": where the value came from

    def get(self) -> str:
        return self._value

    @property
    def is_reference(self) -> bool:
        """True when the value was read from the server's environment or files (not given inline)."""
        return self.kind != "literal"

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        """A pickle holds the reference only, resolved again where it is loaded; never the value.

        A literal secret has no reference to hold: pickling it is refused rather than writing the
        key into the bytes (give it as ``$ENV`` or a file to share it with another process)."""
        if not self.is_reference:
            raise TypeError(
                "a literal Secret cannot be pickled: that would write the key in clear; "
                "reference it as $ENV or a file instead"
            )
        return (resolve_secret, (self.source,))

    @classmethod
    def __get_pydantic_core_schema__(cls, source_type: Any, handler: GetCoreSchemaHandler) -> Any:
        def validate(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if not isinstance(value, str):
                raise PydanticCustomError(
                    "secret_type", "must be a string: an API key, a $ENV_VARIABLE or a path to a file"
                )
            if not value.strip():
                raise PydanticCustomError("secret_empty", "must not be empty")
            return resolve_secret(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: MASK),
        )


def is_path_reference(value: str) -> bool:
    return value.startswith(_PATH_PREFIXES)


def env_name_hint(value: str) -> str | None:
    """``"did you mean '$NAME'?"`` for a literal that looks like an environment variable's name."""
    if _ENV_NAME.fullmatch(value):
        return f"'{value}' looks like an environment variable's name but is used as the key itself; did you mean '${value}'?"
    return None


@contextmanager
def unresolved() -> Iterator[None]:
    """Within the block, references are checked for form only: no environment, no file is read."""
    token = _mode.set("unresolved")
    try:
        yield
    finally:
        _mode.reset(token)


@contextmanager
def literal_only() -> Iterator[None]:
    """Within the block, a ``$VAR``, a path or the name of a file on the server is refused: what a
    route created at run time may carry is a key given inline (docs/security.md)."""
    token = _mode.set("literal")
    try:
        yield
    finally:
        _mode.reset(token)


_REFUSED = (
    "a route created at run time cannot use the server's {what}; give the key itself, or name a "
    "credential of the config file's credentials: section (model.credentials)"
)


def resolve_secret(reference: str) -> Secret:
    """``$NAME`` → the environment variable (unset is an error naming it); a path → the file's
    contents, stripped (missing or unreadable is an error); anything else → the literal itself."""
    if reference.startswith("$"):
        name = reference[1:]
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1]
        if not name:
            raise PydanticCustomError(
                "secret_reference", "'$' must be followed by an environment variable's name"
            )
        mode = _mode.get()
        if mode == "literal":
            raise PydanticCustomError("secret_reference_refused", _REFUSED.format(what="environment ($VAR)"))
        if mode == "unresolved":
            return Secret(f"<unresolved ${name}>", reference, "env")
        value = os.environ.get(name)
        if value is None:
            raise PydanticCustomError(
                "secret_not_found", "environment variable '{variable}' is not set", {"variable": name}
            )
        return Secret(value, reference, "env")
    mode = _mode.get()
    if is_path_reference(reference) or (mode == "literal" and _is_file(reference)):
        if mode == "literal":
            raise PydanticCustomError("secret_reference_refused", _REFUSED.format(what="files (a path)"))
        if mode == "unresolved":
            return Secret(f"<unresolved file {reference}>", reference, "file")
        return Secret(_read_secret_file(reference), reference, "file")
    if mode == "resolve" and _is_file(reference):  # MLflow's rule: an existing file, even as 'key.txt'
        return Secret(_read_secret_file(reference), reference, "file")
    return Secret(reference, reference)


def _is_file(reference: str) -> bool:
    try:
        return Path(reference).is_file()
    except (OSError, ValueError):  # names too long for the OS, NUL bytes: not a path, a literal
        return False


def _read_secret_file(reference: str) -> str:
    try:
        path = Path(reference).expanduser()
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except PermissionError:
        problem = "is not readable by the gateway (permission denied)"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        problem = f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    else:
        if value:
            return value
        problem = "is empty"
    raise PydanticCustomError(
        "secret_file",
        "looks like a path, so it must be a readable file holding the key, but '{path}' {problem}",
        {"path": reference, "problem": problem},
    )


# ---------------------------------------------------------------- redaction (error paths only)

# A secret cut in two (an upstream's text truncated to 500 characters) still shows one half:
# runs of at least this many characters of a secret's start or end are masked too.
_FRAGMENT = 8


def redact(text: str, secrets: Sequence[Secret]) -> str:
    """Remove every secret's value, and any long-enough piece of its start or end, from ``text``."""
    for secret in secrets:
        value = secret.get()
        if len(value) < 4:
            continue
        if value in text:
            text = text.replace(value, MASK)
        if len(value) > _FRAGMENT:
            text = _mask_fragments(text, value)
    return text


def _mask_fragments(text: str, value: str) -> str:
    head, tail = value[:_FRAGMENT], value[-_FRAGMENT:]
    if head not in text and tail not in text:
        return text
    spans = []
    start = text.find(head)
    while start >= 0:  # the key's beginning, as far as it goes on
        length = _FRAGMENT
        while start + length < len(text) and length < len(value) and text[start + length] == value[length]:
            length += 1
        spans.append((start, start + length))
        start = text.find(head, start + 1)
    end = text.find(tail)
    while end >= 0:  # the key's end, as far back as it goes
        stop = end + _FRAGMENT
        length = _FRAGMENT
        while end > 0 and length < len(value) and text[end - 1] == value[-length - 1]:
            end -= 1
            length += 1
        spans.append((end, stop))
        end = text.find(tail, stop)
    out, position = [], 0
    for begin, finish in sorted(spans):
        if finish <= position:
            continue
        out.append(text[position : max(begin, position)])
        out.append(MASK)
        position = finish
    out.append(text[position:])
    return "".join(out)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def escape_control(text: str) -> str:
    r"""Control characters as visible escapes (``\n`` → ``\\n``), so an upstream's text cannot
    forge a log line or a terminal sequence."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def scrub(error: GatewayError, secrets: Sequence[Secret]) -> GatewayError:
    """Make an error built from an upstream's words safe to answer and to log, in place: no
    secret of the route's model (whole or in part), no control characters."""
    message = escape_control(redact(error.message, secrets))
    error.message = message
    error.args = (message,)
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        error.reason = escape_control(redact(reason, secrets))  # type: ignore[attr-defined]
    return error

"""AWS plumbing for the Bedrock adapter: credentials, SigV4 signing, the binary event stream.

Everything cryptographic or protocol-level is botocore's, imported lazily (about 150 ms) so that
loading a config does not pay for it:

- **Signing** uses :class:`botocore.auth.SigV4Auth` on a :class:`botocore.awsrequest.AWSRequest`
  holding the exact bytes that will be sent. Signing needs the current time, so it is the one impure
  step of a Bedrock request; :class:`SigV4Signer` takes the clock as an argument (tests pass a fixed
  one) and runs it through SigV4Auth's public steps (canonical request, string to sign, signature).
  It reads credentials already in memory and never does I/O.
- **Credentials** come in MLflow's ``aws_config`` forms: static keys; the default credential chain
  (environment, shared files, container or instance metadata) through a botocore session; or a role
  assumed with STS ``AssumeRole`` on top of that chain, refreshed before it expires. Resolving and
  refreshing are blocking botocore calls (files, instance metadata, STS): :class:`CredentialSource`
  runs them only in :meth:`~CredentialSource.load`, which the server calls in a worker thread
  (``asyncio.to_thread``) at start-up and again when the credentials are due for refresh, never on
  the event loop.
- **Event stream** (``application/vnd.amazon.eventstream``, ConverseStream's body) is decoded by
  :class:`botocore.eventstream.EventStreamBuffer`; :class:`EventStreamDecoder` only turns each message
  into the adapter's :class:`~gateway_server.providers.streaming.StreamEvent`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway_server.errors import UpstreamProtocolError
from gateway_server.providers.streaming import StreamEvent

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials

__all__ = [
    "CredentialSource",
    "EventStreamDecoder",
    "SigV4Signer",
    "assumed_role_credentials",
    "default_chain_credentials",
    "static_credentials",
    "utc_now",
]

SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
ROLE_SESSION_NAME = "gatewayctl-bedrock"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- credentials


class CredentialSource:
    """AWS credentials kept in memory for signing; resolved and refreshed only by :meth:`load`.

    :meth:`load` makes the blocking botocore calls (a credential chain lookup, instance metadata,
    STS); :meth:`refresh` runs it in a worker thread when :meth:`due` (never loaded, or inside the
    refresh window of expiring credentials), one thread call at a time however many requests wait.
    :meth:`frozen` hands the current keys to the signer without any I/O.
    """

    def __init__(self, resolve: Callable[[], Credentials | None], what: str) -> None:
        self._resolve = resolve
        self._what = what
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._lock = threading.Lock()
        self._loading: asyncio.Future[None] | None = None

    @classmethod
    def static(cls, credentials: Credentials) -> CredentialSource:
        source = cls(lambda: credentials, "the route's keys")
        source.load()  # no I/O: the keys are in the config
        return source

    def load(self) -> None:
        """Resolve (first time) and refresh if due: blocking; call it off the event loop."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._resolve()
            if self._credentials is None:
                raise LookupError(f"no AWS credentials found in {self._what}")
            self._frozen = self._credentials.get_frozen_credentials()  # refreshes when due

    def due(self) -> bool:
        if self._frozen is None:
            return True
        refresh_needed = getattr(self._credentials, "refresh_needed", None)  # expiring kinds only
        return bool(refresh_needed is not None and refresh_needed())

    async def refresh(self) -> None:
        """:meth:`load` in a worker thread, when :meth:`due`; concurrent callers share one load."""
        if not self.due():
            return
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(asyncio.to_thread(self.load))
        await asyncio.shield(self._loading)

    def frozen(self) -> ReadOnlyCredentials:
        if self._frozen is None:
            raise LookupError(f"the AWS credentials from {self._what} are not loaded yet")
        return self._frozen


def static_credentials(access_key: str, secret_key: str, token: str | None = None) -> CredentialSource:
    from botocore.credentials import Credentials

    return CredentialSource.static(Credentials(access_key, secret_key, token))


def default_chain_credentials(region: str) -> CredentialSource:
    """botocore's default chain (env, ~/.aws files, SSO, container and instance metadata)."""

    def resolve() -> Credentials | None:
        import botocore.session

        return botocore.session.Session().get_credentials()

    return CredentialSource(
        resolve,
        "the default credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws files, "
        "container or instance metadata)",
    )


def assumed_role_credentials(
    role_arn: str,
    region: str,
    session_seconds: int,
    *,
    assume_role: Callable[[], Mapping[str, Any]] | None = None,
    time_fetcher: Callable[[], dt.datetime] | None = None,
) -> CredentialSource:
    """Temporary credentials of ``role_arn`` (STS AssumeRole with the default chain's credentials).

    botocore's ``DeferredRefreshableCredentials`` calls ``assume_role`` on first use and again when
    less than a third of the session is left (at most 5 minutes before expiry: botocore's own
    15-minute default would refresh on every call for the 15-minute sessions MLflow defaults to).
    ``assume_role`` returns STS's ``Credentials`` mapping; tests pass their own. The refresh runs in
    :meth:`CredentialSource.load`, in a worker thread, as soon as :meth:`CredentialSource.due`.
    """

    def resolve() -> Credentials:
        from botocore.credentials import DeferredRefreshableCredentials

        call = assume_role or _sts_assume_role(role_arn, region, session_seconds)

        def fetch() -> dict[str, Any]:
            answer = call()
            expiry = answer["Expiration"]
            return {
                "access_key": answer["AccessKeyId"],
                "secret_key": answer["SecretAccessKey"],
                "token": answer["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, dt.datetime) else str(expiry),
            }

        options: dict[str, Any] = {"time_fetcher": time_fetcher} if time_fetcher else {}
        credentials = DeferredRefreshableCredentials(refresh_using=fetch, method="assume-role", **options)
        advisory = min(300, session_seconds // 3)
        credentials._advisory_refresh_timeout = advisory  # botocore's documented knobs,
        credentials._mandatory_refresh_timeout = min(120, advisory // 2)  # set per instance
        return credentials

    return CredentialSource(resolve, f"the role {role_arn}")


def _sts_assume_role(role_arn: str, region: str, session_seconds: int) -> Callable[[], Mapping[str, Any]]:
    client: list[Any] = []

    def call() -> Mapping[str, Any]:
        if not client:
            import botocore.session

            client.append(botocore.session.Session().create_client("sts", region_name=region))
        answer = client[0].assume_role(
            RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME, DurationSeconds=session_seconds
        )
        return answer["Credentials"]

    return call


# ---------------------------------------------------------------- signing


class SigV4Signer:
    """Signs one request's exact bytes with SigV4 for ``service`` in ``region``."""

    def __init__(
        self,
        credentials: Callable[[], ReadOnlyCredentials],
        region: str,
        service: str = "bedrock",
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._credentials = credentials
        self.region = region
        self.service = service
        self.clock = clock

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """The headers to send: ``headers`` plus X-Amz-Date, X-Amz-Security-Token and Authorization."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials()  # in memory: signing does no I/O
        signer = SigV4Auth(credentials, self.service, self.region)
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        timestamp = self.clock().astimezone(dt.UTC).strftime(SIGV4_TIMESTAMP)
        request.context["timestamp"] = timestamp
        request.headers["X-Amz-Date"] = timestamp
        if credentials.token:
            request.headers["X-Amz-Security-Token"] = credentials.token
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        signed = signer.signed_headers(signer.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return dict(request.headers.items())


# ---------------------------------------------------------------- event stream


class EventStreamDecoder:
    """AWS event-stream bytes in, :class:`StreamEvent` out (``feed``/``close`` like SSEDecoder).

    An ``event`` message becomes ``StreamEvent(payload, event=<:event-type>)``; an ``exception``
    message ``StreamEvent(payload, event=<:exception-type>)`` (names end in ``Exception``); an
    ``error`` message ``StreamEvent('{"code": ..., "message": ...}', event="error")``.
    """

    def __init__(self, provider: str = "bedrock") -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()
        self._pending = 0
        self._provider = provider

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        events = []
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                events.append(_to_event(message.headers, message.payload))
        except ParserError as exc:  # a bad checksum or length: the bytes are not an event stream
            raise self._broken(f"sent a corrupt event stream ({type(exc).__name__}: {exc})") from exc
        return events

    def close(self) -> list[StreamEvent]:
        if self._pending:
            raise self._broken(f"ended its event stream inside a message ({self._pending} bytes left over)")
        return []

    def _broken(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"{self._provider} {what}", provider=self._provider)


def _to_event(headers: Mapping[str, Any], payload: bytes) -> StreamEvent:
    kind = headers.get(":message-type", "event")
    text = payload.decode("utf-8")
    if kind == "event":
        return StreamEvent(text, headers.get(":event-type"))
    if kind == "exception":
        return StreamEvent(text, headers.get(":exception-type") or "exception")
    import orjson

    error = {"code": headers.get(":error-code", "error"), "message": headers.get(":error-message", text)}
    return StreamEvent(orjson.dumps(error).decode(), "error")

"""Stored responses of ``/v1/responses``, for ``previous_response_id``, ``GET`` and ``DELETE``.

A stored entry is the response object and the conversation that led to it (the input items of the
call, already expanded with the earlier turns), so a follow-up call with ``previous_response_id``
sends the whole conversation to any provider. Responses with ``"store": false`` are not kept.

- With ``server.shared_state`` (Redis), entries live in Redis under ``gatewayctl:responses:<id>``
  with a TTL, so every worker and replica finds them; Redis failing is a 503, as for shared routes.
- Without it, entries live in this process's memory: a dict in insertion order, bounded by
  :data:`MAX_ENTRIES` (the oldest go first) and :data:`MAX_ENTRY_BYTES` per entry, with the same TTL.
  With several workers a response is found only by the worker that made it: set
  ``server.shared_state`` for agents behind ``--workers N``.

:data:`TTL_SECONDS` is 30 days, OpenAI's own retention of stored responses.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway_server.errors import InvalidRequestError, ResponseNotFoundError, SharedStateUnavailableError

__all__ = ["MAX_ENTRIES", "MAX_ENTRY_BYTES", "TTL_SECONDS", "ResponseStore"]

TTL_SECONDS = 30 * 24 * 3600
MAX_ENTRIES = 1000  # in memory, per process
MAX_ENTRY_BYTES = 4 * 1024 * 1024  # one conversation; a larger one is not stored (and says so in the log)
_PREFIX = "gatewayctl:responses:"

logger = logging.getLogger("gateway_server.shared")


class ResponseStore:
    """See the module docstring. ``shared`` is the app's :class:`~gateway_server.shared.SharedState`."""

    def __init__(
        self, shared: Any = None, *, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.shared = shared
        self.ttl = ttl
        self.max_entries = max_entries
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> bool:
        """Keep ``response`` and the items it answered; False when it is too large to keep."""
        raw = orjson.dumps({"response": response, "conversation": conversation})
        if len(raw) > MAX_ENTRY_BYTES:
            return False
        if self.shared is not None:
            try:
                await self.shared.client.set(_PREFIX + response["id"], raw, ex=int(self.ttl))
            except Exception as exc:  # redis' own errors: reported like any shared-state failure
                raise self._unavailable(exc, "the response was not stored") from None
            return True
        memory = self._memory
        memory[response["id"]] = (time.monotonic() + self.ttl, raw)
        memory.move_to_end(response["id"])
        while len(memory) > self.max_entries:
            memory.popitem(last=False)
        return True

    async def get(self, response_id: str) -> dict[str, Any]:
        """``{"response", "conversation"}``; raises a 404 naming the id when it is not kept."""
        raw = await self._raw(response_id)
        if raw is None:
            raise ResponseNotFoundError(response_id)
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def delete(self, response_id: str) -> None:
        if self.shared is not None:
            try:
                removed = await self.shared.client.delete(_PREFIX + response_id)
            except Exception as exc:
                raise self._unavailable(exc, "the response was not deleted") from None
            if not removed:
                raise ResponseNotFoundError(response_id)
            return
        if self._memory.pop(response_id, None) is None:
            raise ResponseNotFoundError(response_id)

    def _unavailable(self, exc: BaseException, consequence: str) -> SharedStateUnavailableError:
        logger.warning("%s", self.shared.unreachable(exc, consequence))  # the operator's detail
        return SharedStateUnavailableError(f"The shared state did not answer: {consequence}; retry shortly.")

    async def _raw(self, response_id: str) -> bytes | None:
        if not response_id.startswith("resp_"):
            raise InvalidRequestError(
                f"Invalid 'previous_response_id' or id: '{response_id}'. Expected an ID that begins with 'resp'.",
                param="previous_response_id",
            )
        if self.shared is not None:
            try:
                return await self.shared.client.get(_PREFIX + response_id)  # type: ignore[no-any-return]
            except Exception as exc:
                raise self._unavailable(exc, "stored responses cannot be read") from None
        entry = self._memory.get(response_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._memory[response_id]
            return None
        return entry[1]

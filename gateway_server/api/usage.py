"""Usage and keys (admin scope): ``GET /api/2.0/gateway/usage`` and ``GET /api/2.0/gateway/keys``.

Usage is counted per hour (UTC) x key name x route x model: requests, prompt and completion
tokens, cost in USD (governor.py). ``since`` is a duration back from now (``30m``, ``24h``,
``7d``) or an ISO 8601 date or time (UTC unless it says otherwise); it is rounded down to the
hour, the table's grain. Keys list each gateway key's name, scopes, limits and budget with what is
spent and left in the current period; never the key or its hash.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from gateway_server.api import paths
from gateway_server.api.routes_crud import AdminKey, State
from gateway_server.errors import InvalidRequestError

__all__ = ["parse_since", "router"]

router = APIRouter()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float) -> float:
    """A UNIX time from ``24h``-style durations or an ISO 8601 date/time; InvalidRequestError else."""
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequestError(
            f"Invalid value for 'since': {value!r}; give a duration (30m, 24h, 7d) or an ISO 8601 "
            "date or time (2026-12-01, 2026-12-01T08:00:00Z).",
            param="since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(paths.USAGE, dependencies=[AdminKey], tags=["governance"])
async def get_usage(
    state: State,
    by: Annotated[Literal["key", "route", "model"], Query(description="What to group by.")] = "key",
    since: Annotated[
        str, Query(description="A duration back from now (24h, 7d) or an ISO date/time.")
    ] = "24h",
) -> dict[str, Any]:
    """Requests, prompt and completion tokens and cost per key, route or model, sorted by cost."""
    assert state.governor is not None
    now = time.time()
    start = parse_since(since, now) // 3600 * 3600
    rows = await state.governor.store.usage(start, by)
    total = {
        name: sum(row[name] for row in rows)
        for name in ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
    }
    return {"by": by, "since": _iso(start), "until": _iso(now), "usage": rows, "total": total}


@router.get(paths.KEYS, dependencies=[AdminKey], tags=["governance"])
async def get_keys(state: State) -> dict[str, Any]:
    """Every gateway key: name, scopes, limits, budget, spent and left (never the key itself)."""
    assert state.governor is not None
    return {"keys": await state.governor.budget_status(state.config.auth)}

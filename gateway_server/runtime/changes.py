"""What changed between two route lists: the pure diff behind every "routes changed" log line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway_server.config import RouteConfig

__all__ = ["RouteChanges", "diff_routes"]


@dataclass(frozen=True, slots=True)
class RouteChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: int = 0

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """``added: a, b; removed: c; changed: d; 3 unchanged`` (or ``no route changes; 3 unchanged``)."""
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if names
        ]
        if not parts:
            parts.append("no route changes")
        parts.append(f"{self.unchanged} unchanged")
        return "; ".join(parts)


def diff_routes(old: Iterable[RouteConfig], new: Iterable[RouteConfig]) -> RouteChanges:
    """Compare two route lists by name. A route whose resolved secret changed counts as changed."""
    before = {route.name: route for route in old}
    after = {route.name: route for route in new}
    common = [name for name in after if name in before]
    changed = tuple(sorted(name for name in common if before[name] != after[name]))
    return RouteChanges(
        added=tuple(sorted(name for name in after if name not in before)),
        removed=tuple(sorted(name for name in before if name not in after)),
        changed=changed,
        unchanged=len(common) - len(changed),
    )

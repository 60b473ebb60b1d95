"""Standard request validation and response shapes, one module per route type.

Requests are validated by small hand-written checks rather than pydantic models: they run on the
hot path of every call, they return the caller's dict (extra keys pass through to the provider,
as in MLflow) and their messages name the field and the allowed form. ``to_legacy`` turns a
standard (OpenAI-shaped) answer into the seed-era ``candidates``/``metadata`` shape.
"""

from gateway_server.routes import RouteType
from gateway_server.schemas import chat, completions, embeddings

VALIDATORS = {
    RouteType.CHAT: chat.validate_request,
    RouteType.COMPLETIONS: completions.validate_request,
    RouteType.EMBEDDINGS: embeddings.validate_request,
}

TO_LEGACY = {
    RouteType.CHAT: chat.to_legacy,
    RouteType.COMPLETIONS: completions.to_legacy,
    RouteType.EMBEDDINGS: embeddings.to_legacy,
}

__all__ = ["TO_LEGACY", "VALIDATORS"]

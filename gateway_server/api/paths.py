"""Every URL path the server answers (MLflow-compatible). Nothing else spells a path."""

HEALTH = "/health"
METRICS = "/metrics"
STATS = "/api/2.0/gateway/stats"  # gatewayctl top's JSON snapshot (stats.py)

# Seed era (MLflow 2.5-2.8): routes
ROUTES = "/api/2.0/gateway/routes/"
ROUTE = "/api/2.0/gateway/routes/{name}"
GATEWAY_PREFIX = "/gateway/"
# MLflow 2.9+: endpoints
ENDPOINTS = "/api/2.0/endpoints/"
ENDPOINT = "/api/2.0/endpoints/{name}"
ENDPOINTS_PREFIX = "/endpoints/"
INVOCATIONS_SUFFIX = "/invocations"

# OpenAI-compatible
V1_CHAT = "/v1/chat/completions"
V1_COMPLETIONS = "/v1/completions"
V1_EMBEDDINGS = "/v1/embeddings"
V1_MODELS = "/v1/models"
# Agent protocols: Anthropic's Messages API and OpenAI's Responses API
V1_MESSAGES = "/v1/messages"
V1_MESSAGES_COUNT_TOKENS = "/v1/messages/count_tokens"
V1_RESPONSES = "/v1/responses"
V1_RESPONSE_PREFIX = "/v1/responses/"  # + {id}: GET (retrieve), DELETE


def route_invocations(name: str) -> str:
    return f"{GATEWAY_PREFIX}{name}{INVOCATIONS_SUFFIX}"


def endpoint_invocations(name: str) -> str:
    return f"{ENDPOINTS_PREFIX}{name}{INVOCATIONS_SUFFIX}"


# Governance (admin scope): usage by key, route or model; gateway keys with budgets
USAGE = "/api/2.0/gateway/usage"
KEYS = "/api/2.0/gateway/keys"

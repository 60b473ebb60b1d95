"""FastAPI dependencies: the gateway state lives on ``app.state.gateway``."""

from __future__ import annotations

from fastapi import Request

from gateway_server.app_state import GatewayState


def get_state(request: Request) -> GatewayState:
    return request.app.state.gateway

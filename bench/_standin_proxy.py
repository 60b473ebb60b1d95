"""A minimal stand-in gateway, used only to check the benchmark harness itself.

Bare ASGI app on uvicorn (uvloop + httptools) forwarding to the upstream through one pooled
``aiohttp.ClientSession``: the "floor" design of SPEC §1. It reads the same YAML as the real gateway
(routes, ``auth.keys`` with literal keys) and serves ``/health``, ``/metrics`` (a counter),
``/gateway/{route}/invocations`` (seed-era chat shape), ``/endpoints/{route}/invocations`` and
``/v1/chat/completions`` (OpenAI shapes, streaming passed through). It is not the product.

``python -m bench._standin_proxy CONFIG --host 127.0.0.1 --port P``
"""

from __future__ import annotations

import argparse
import hmac
import sys

import aiohttp
import orjson
import uvicorn
import yaml

from bench._proc import require_loopback


class StandinProxy:
    def __init__(self, config: dict) -> None:
        self.routes = {r["name"]: r for r in config.get("routes", [])}
        self.keys = [k["key"].encode() for k in (config.get("auth") or {}).get("keys", [])]
        self.session: aiohttp.ClientSession | None = None
        self.count = 0

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope["path"]
        if scope["method"] == "GET":
            if path == "/health":
                await _json(send, 200, b'{"status":"OK"}')
            elif path == "/metrics":
                await _send(send, 200, b"text/plain", b"gateway_requests_total %d\n" % self.count)
            else:
                await _json(send, 404, b'{"error":{"message":"not found"}}')
            return
        if self.keys and not self._authorized(scope):
            await _json(send, 401, b'{"error":{"message":"missing or wrong key"}}')
            return
        body = await _read_body(receive)
        self.count += 1
        await self._invoke(path, body, send)

    def _authorized(self, scope: dict) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization" and value.startswith(b"Bearer "):
                return any(hmac.compare_digest(value[7:], k) for k in self.keys)
        return False

    async def _invoke(self, path: str, body: bytes, send) -> None:
        parts = path.strip("/").split("/")
        data = orjson.loads(body)
        if path.startswith("/v1/"):
            name, seed = data.get("model"), False
        elif len(parts) == 3 and parts[0] in ("gateway", "endpoints") and parts[2] == "invocations":
            name, seed = parts[1], parts[0] == "gateway"
        else:
            await _json(send, 404, b'{"error":{"message":"not found"}}')
            return
        route = self.routes.get(name)
        if route is None:
            await _json(send, 404, b'{"error":{"message":"unknown route"}}')
            return
        model = route["model"]
        data["model"] = model["name"]
        cfg = model["config"]
        kind = route["route_type"].rsplit("/", 1)[1]
        url = cfg["openai_api_base"].rstrip("/") + {"chat": "/chat/completions"}.get(kind, f"/{kind}")
        headers = {"Authorization": f"Bearer {cfg['openai_api_key']}"}
        assert self.session is not None
        async with self.session.post(url, data=orjson.dumps(data), headers=headers) as resp:
            if data.get("stream"):
                await _stream(send, resp)
                return
            answer = await resp.read()
        if seed and kind == "chat":
            answer = _to_seed_chat(orjson.loads(answer), route["route_type"])
        await _json(send, resp.status, answer)

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=None)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _to_seed_chat(obj: dict, route_type: str) -> bytes:
    usage = obj.get("usage") or {}
    return orjson.dumps(
        {
            "candidates": [
                {"message": c["message"], "metadata": {"finish_reason": c.get("finish_reason")}}
                for c in obj["choices"]
            ],
            "metadata": {
                "input_tokens": usage.get("prompt_tokens"),
                "output_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "model": obj.get("model"),
                "route_type": route_type,
            },
        }
    )


async def _read_body(receive) -> bytes:
    chunks = []
    for _ in range(100_000):  # bounded: a body of at most 100k ASGI messages
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


async def _stream(send, resp: aiohttp.ClientResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    async for chunk in resp.content.iter_any():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _send(send, status: int, ctype: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, body: bytes) -> None:
    await _send(send, status, b"application/json", body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench._standin_proxy")
    ap.add_argument("config")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args(argv)
    with open(args.config) as fh:
        app = StandinProxy(yaml.safe_load(fh))
    uvicorn.run(
        app, host=require_loopback(args.host), port=args.port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="on",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

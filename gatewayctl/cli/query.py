"""``gatewayctl query ROUTE``: send one request to a route and print the answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway_server.routes import RouteType
from gatewayctl._common import DEFAULT_TIMEOUT
from gatewayctl.cli import output
from gatewayctl.cli.options import ApiKey, GatewayUri, Output, Timeout, make_client

if TYPE_CHECKING:
    from gatewayctl.client import GatewayClient

__all__ = ["answer_texts", "query"]


def _text_of(item: dict[str, Any]) -> str | None:
    """The text of one candidate/choice (seed era or OpenAI shape, whole message or stream delta)."""
    for key in ("message", "delta"):
        part = item.get(key)
        if isinstance(part, dict) and isinstance(part.get("content"), str):
            return part["content"]
    text = item.get("text")
    return text if isinstance(text, str) else None


def answer_texts(answer: Any) -> list[str]:
    """Every text in an answer or a stream chunk, in candidate order."""
    if not isinstance(answer, dict):
        return []
    items = answer.get("candidates") or answer.get("choices") or []
    texts = (_text_of(item) for item in items if isinstance(item, dict))
    return [text for text in texts if text is not None]


def _embeddings(answer: dict[str, Any]) -> list[list[float]]:
    if isinstance(answer.get("embeddings"), list):
        return answer["embeddings"]
    data = answer.get("data")
    if isinstance(data, list):
        return [item["embedding"] for item in data if isinstance(item, dict) and "embedding" in item]
    return []


def _print_answer(answer: dict[str, Any]) -> None:
    texts = answer_texts(answer)
    if texts:
        output.print_text("\n\n".join(texts))
        return
    vectors = _embeddings(answer)
    if vectors:
        for index, vector in enumerate(vectors):
            head = ", ".join(f"{value:.4f}" for value in vector[:4])
            more = ", ..." if len(vector) > 4 else ""
            output.print_text(f"embedding {index}: {len(vector)} dimensions [{head}{more}]")
        return
    output.print_text(json.dumps(answer, indent=2))


def _body(
    client: GatewayClient,
    route: str,
    prompt: str | None,
    text: list[str] | None,
    data: str | None,
    file: typer.FileText | None,
) -> dict[str, Any]:
    given = [
        hint
        for hint, value in (
            ("--prompt", prompt),
            ("--text", text or None),
            ("--data", data),
            ("--file", file),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise typer.BadParameter(f"give exactly one of --prompt, --text, --data, --file (got {len(given)})")
    if prompt is not None:
        route_type = client.get_route(route).route_type
        if route_type is RouteType.EMBEDDINGS:
            raise typer.BadParameter(
                f"route '{route}' is an embeddings route; use --text", param_hint="--prompt"
            )
        if route_type is RouteType.CHAT:
            return {"messages": [{"role": "user", "content": prompt}]}
        return {"prompt": prompt}
    if text:
        return {"text": text[0] if len(text) == 1 else list(text)}
    if data is not None:
        raw, hint = data, "--data"
    else:
        raw, hint = (file.read() if file is not None else ""), "--file"
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=hint) from exc
    if not isinstance(body, dict):
        raise typer.BadParameter("expected a JSON object", param_hint=hint)
    return body


def query(  # noqa: PLR0913 - one parameter per CLI option
    route: Annotated[str, typer.Argument(metavar="ROUTE", help="Route name.")],
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", metavar="TEXT", help="Prompt text (chat or completions route)."),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", "-t", metavar="TEXT", help="Text to embed (embeddings route); repeatable."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", metavar="JSON", help="Request body as JSON.")
    ] = None,
    file: Annotated[
        typer.FileText | None,
        typer.Option("--file", "-f", metavar="FILE", help="File with the JSON request body; - for stdin."),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they arrive.")] = False,
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """Query a route and print the answer's text (the raw answer with --output json).

    --prompt sends {"messages": [...]} to a chat route, {"prompt": ...} to a completions route.
    --text sends {"text": ...} to an embeddings route (repeat it for several texts).
    --data and --file send the body as given.

    Examples:

    \b
      gatewayctl query chat --prompt "Say hello"
      gatewayctl query chat --prompt "Tell a story" --stream
      gatewayctl query embeddings --text "first" --text "second" -o json
      gatewayctl query chat --data '{"messages": [{"role": "user", "content": "Hi"}]}'
      echo '{"prompt": "Hello"}' | gatewayctl query completions --file -
    """
    as_json = output_format is output.OutputFormat.JSON
    with make_client(gateway_uri, api_key, timeout) as client:
        body = _body(client, route, prompt, text, data, file)
        if not stream:
            answer = client.query(route, body)
            if as_json:
                output.emit_json(answer)
            else:
                _print_answer(answer)
            return
        with client.query(route, body, stream=True) as chunks:
            for chunk in chunks:
                if as_json:
                    output.emit_json(chunk, compact=True)
                else:
                    output.print_text("".join(answer_texts(chunk)), end="")
        if not as_json:
            output.print_text("")

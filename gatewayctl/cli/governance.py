"""``gatewayctl usage`` and ``gatewayctl keys``: what a running gateway's keys, routes and models used,
and each key's scopes, limits and budget with what is left (both need an admin key)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from gatewayctl._common import DEFAULT_TIMEOUT
from gatewayctl.cli import output
from gatewayctl.cli.options import ApiKey, GatewayUri, Output, Timeout, make_client

__all__ = ["keys", "usage"]


class By(StrEnum):
    KEY = "key"
    ROUTE = "route"
    MODEL = "model"


def usage(
    by: Annotated[
        By, typer.Option("--by", case_sensitive=False, help="Group by key, route or model.")
    ] = By.KEY,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="DURATION|DATE",
            help="A duration back from now (30m, 24h, 7d) or an ISO date/time (UTC).",
        ),
    ] = "24h",
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """Show requests, tokens and cost per key, route or model, most expensive first (admin key).

    Examples:

    \b
      gatewayctl usage
      gatewayctl usage --by model --since 7d
      gatewayctl usage --by route --since 2026-12-01 -o json
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        report = client.get_usage(by.value, since)
    if output_format is output.OutputFormat.JSON:
        output.emit_json(report)
        return
    print_usage(report)


def print_usage(report: dict[str, Any]) -> None:
    by = report["by"]
    rows = report["usage"]
    if not rows:
        output.say(f"No usage since {report['since']}.")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, title=f"usage since {report['since']}")
    table.add_column(by.upper(), overflow="fold")
    for column in ("REQUESTS", "PROMPT", "COMPLETION", "TOTAL", "COST (USD)"):
        table.add_column(column, justify="right")
    total = report["total"]
    for row in [*rows, {**total, by: "total"}]:
        table.add_row(
            output.escape(str(row[by])),
            f"{row['requests']:,}",
            f"{row['prompt_tokens']:,}",
            f"{row['completion_tokens']:,}",
            f"{row['total_tokens']:,}",
            f"{row['cost_usd']:,.4f}",
            end_section=row is rows[-1],
        )
    output.print_table(table)


def keys(
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """List the gateway's keys: scopes, limits, budget and what is left of it (admin key; never a secret).

    Examples:

    \b
      gatewayctl keys --api-key "$ADMIN_KEY"
      gatewayctl keys -o json | jq '.data[] | {name, budget}'
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        found = client.list_keys()
    if output_format is output.OutputFormat.JSON:
        output.emit_json(found)
        return
    if not found:
        output.say("The gateway has no keys (no auth: section): queries are open.")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "SCOPES", "LIMITS", "BUDGET", "SPENT", "LEFT", "RENEWS"):
        table.add_column(column, overflow="fold")
    for key in found:
        budget = key.get("budget")
        cells = ["-", "-", "-", "-"]
        if budget:
            unit = "usd" if "usd" in budget else "tokens"
            cells = [
                f"{_amount(budget[unit], unit)} a {budget['period']}",
                _amount(key["spent"], unit),
                _amount(key["left"], unit),
                datetime.fromtimestamp(key["renews_at"], UTC).strftime("%Y-%m-%d %H:%M UTC"),
            ]
        limits = ", ".join(_limit(limit) for limit in key.get("limits") or ()) or "-"
        table.add_row(output.escape(key["name"]), ", ".join(key["scopes"]), limits, *cells)
    output.print_table(table)


def _amount(value: float, unit: str) -> str:
    return f"${value:,.2f}" if unit == "usd" else f"{int(value):,} tokens"


def _limit(limit: dict[str, Any]) -> str:
    measure = f"{limit['calls']} calls" if "calls" in limit else f"{limit['tokens']:,} tokens"
    return f"{measure} per {limit['renewal_period']}"

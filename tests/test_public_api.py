"""The library surface of ``gatewayctl`` is deliberate: pinned here, and light to import."""

from __future__ import annotations

import subprocess
import sys

import gateway_server.errors
import gatewayctl

PUBLIC_NAMES = [
    "AsyncGatewayClient",
    "AuthenticationError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ClientRequestError",
    "ConfigError",
    "ConfigNotPersistableError",
    "GatewayClient",
    "GatewayError",
    "GatewayTimeoutError",
    "GatewayUnreachableError",
    "GatewayUriError",
    "InvalidRequestError",
    "ListenError",
    "MethodNotAllowedError",
    "MlflowGatewayClient",
    "PagedList",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseNotFoundError",
    "Route",
    "RouteExistsError",
    "RouteNotFoundError",
    "RouteType",
    "SecretNotFoundError",
    "SharedStateUnavailableError",
    "UnsupportedRouteTypeError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "__version__",
    "create_route",
    "delete_route",
    "get_gateway_uri",
    "get_route",
    "query",
    "search_routes",
    "set_gateway_uri",
]


def test_all_is_pinned_and_sorted() -> None:
    assert gatewayctl.__all__ == PUBLIC_NAMES
    assert sorted(gatewayctl.__all__) == gatewayctl.__all__


def test_every_public_name_exists() -> None:
    for name in gatewayctl.__all__:
        assert getattr(gatewayctl, name) is not None, name


def test_every_server_error_class_is_reexported_as_the_same_object() -> None:
    server_errors = [
        name
        for name in gateway_server.errors.__all__
        if isinstance(getattr(gateway_server.errors, name), type)
        and issubclass(getattr(gateway_server.errors, name), gateway_server.errors.GatewayError)
    ]
    assert server_errors  # the tree is not empty
    for name in server_errors:
        assert getattr(gatewayctl, name) is getattr(gateway_server.errors, name), name


def test_every_error_class_of_the_package_is_in_the_one_tree() -> None:
    # Every GatewayError subclass that gateway_server or gatewayctl defines lives in errors.py.
    import importlib
    import pkgutil

    import gateway_server

    defined = set()
    for package in (gateway_server, gatewayctl):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".testing" in info.name or info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, gateway_server.errors.GatewayError):
                    defined.add((value.__module__, value.__name__))
    assert {module for module, _ in defined} == {"gateway_server.errors"}, sorted(defined)
    tree = gateway_server.errors.__doc__ or ""
    for _, name in defined:
        assert name in tree and name in gateway_server.errors.__all__, name


def test_version_matches_the_single_source() -> None:
    from gatewayctl._version import __version__

    assert gatewayctl.__version__ == __version__


def test_import_does_not_load_the_server_web_stack() -> None:
    code = (
        "import sys, gatewayctl\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'uvicorn', 'starlette', 'aiohttp'})\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_cli_start_does_not_load_the_client_stack() -> None:
    # `gatewayctl serve` runs through the CLI: httpx (with the rich, click and pygments its own CLI
    # pulls in) is for the commands that call a gateway, and rich for printing; both load on use.
    code = (
        "import sys, gatewayctl, gatewayctl.cli.app, typer.main\n"
        "typer.main.get_command(gatewayctl.cli.app.app)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'httpx', 'httpcore', 'rich', 'pygments'})\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_lazy_names_are_the_client_modules_objects() -> None:
    import gatewayctl.client
    import gatewayctl.fluent

    assert gatewayctl.GatewayClient is gatewayctl.client.GatewayClient
    assert gatewayctl.GatewayUnreachableError is gatewayctl.client.GatewayUnreachableError
    assert gatewayctl.query is gatewayctl.fluent.query
    assert set(gatewayctl.__all__) <= set(dir(gatewayctl))

"""Config loading: both MLflow spellings, strict keys, located errors, masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_server.config import GatewayConfig, Model, RouteConfig, load_config, parse_config, parse_route
from gateway_server.errors import ConfigError
from gateway_server.providers.openai import OpenAIAPIType, OpenAIConfig
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

REPO = Path(__file__).resolve().parents[2]
INVALID = sorted((REPO / "sample-configs" / "invalid").glob("*.yaml"))
SAMPLES = sorted(p for p in (REPO / "sample-configs").glob("*.yaml"))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_config_invalid_samples_give_the_expected_text(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    relative = path.relative_to(REPO)
    with pytest.raises(ConfigError) as caught:
        load_config(relative)
    expected = path.with_suffix(".expected.txt").read_text(encoding="utf-8")
    assert str(caught.value) + "\n" == expected


def test_config_every_invalid_sample_has_expected_text() -> None:
    assert INVALID, "sample-configs/invalid/ must hold bad configs"
    for path in INVALID:
        assert path.with_suffix(".expected.txt").is_file(), path


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_config_samples_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _env_refs(path.read_text()):
        monkeypatch.setenv(var, f"test-value-for-{var}")
    config = load_config(path)
    assert config.routes


def _env_refs(text: str) -> set[str]:
    import re

    return set(re.findall(r"\$([A-Z][A-Z0-9_]*)", text))


def test_config_endpoints_spelling_is_accepted(tmp_config) -> None:
    path = tmp_config(
        """
        endpoints:
          - name: chat
            endpoint_type: llm/v1/chat
            model: {provider: fake, name: m}
        """
    )
    config = load_config(path)
    assert config.routes[0].route_type is RouteType.CHAT
    assert config.routes[0].to_route().route_url == "/gateway/chat/invocations"


def test_config_provider_names_are_normalised(tmp_config) -> None:
    path = tmp_config(
        """
        routes:
          - name: chat
            route_type: llm/v1/chat
            model: {provider: OpenAI, name: gpt, config: {openai_api_key: sk-x}}
          - name: fake
            route_type: llm/v1/chat
            model: {provider: FAKE}
        """
    )
    config = load_config(path)
    assert [r.primary_models[0].provider for r in config.routes] == ["openai", "fake"]


def test_config_lists_every_problem_with_line_route_and_field(tmp_config) -> None:
    path = tmp_config(
        """
        routes:
          - name: one
            route_type: llm/v1/chat
            model:
              provider: openai
              config:
                openai_api_key: $GATEWAYCTL_TEST_NOT_SET
          - name: two
            route_type: llm/v1/nope
            model: {provider: fake}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    issues = caught.value.issues
    assert [(i.line, i.route, i.field) for i in issues] == [
        (7, "one", "model.config.openai_api_key"),
        (9, "two", "route_type"),
    ]
    assert "environment variable 'GATEWAYCTL_TEST_NOT_SET' is not set" in issues[0].message
    assert str(issues[0]).startswith(f"{path}:7: route 'one': model.config.openai_api_key: ")


def test_config_secret_sources_env_file_literal(
    tmp_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAYCTL_TEST_KEY", "sk-from-env")
    key_file = tmp_path / "key.txt"
    key_file.write_text("sk-from-file\n")
    path = tmp_config(
        f"""
        routes:
          - name: a
            route_type: llm/v1/chat
            model: {{provider: openai, name: m, config: {{openai_api_key: $GATEWAYCTL_TEST_KEY}}}}
          - name: b
            route_type: llm/v1/chat
            model: {{provider: openai, name: m, config: {{openai_api_key: {key_file}}}}}
          - name: c
            route_type: llm/v1/chat
            model: {{provider: openai, name: m, config: {{openai_api_key: sk-literal}}}}
        """
    )
    config = load_config(path)
    keys = [route.primary_models[0].config.openai_api_key for route in config.routes]
    assert [k.get() for k in keys] == ["sk-from-env", "sk-from-file", "sk-literal"]
    assert keys[0].source == "$GATEWAYCTL_TEST_KEY"
    for key in keys:
        assert "sk-" not in repr(key) and "sk-" not in str(key) and "sk-" not in f"{key}"
    dumped = config.model_dump_json()
    assert "sk-from" not in dumped and "sk-literal" not in dumped
    assert "sk-" not in repr(config)


def test_config_secret_never_in_error_text(tmp_config) -> None:
    path = tmp_config(
        """
        routes:
          - name: a
            route_type: llm/v1/chat
            model:
              provider: openai
              config: {openai_api_key: sk-SENTINEL-1234, openai_api_type: azure}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "sk-SENTINEL" not in str(caught.value)


def test_config_refuses_a_primary_model_whose_provider_lacks_the_route_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway_server import providers
    from gateway_server.providers.fake import FakeAdapter

    class ChatOnly(FakeAdapter):
        name = "chatonly"
        route_types = frozenset({RouteType.CHAT})

    monkeypatch.setitem(providers.PROVIDERS, "chatonly", ChatOnly)
    text = "routes:\n  - name: e\n    route_type: llm/v1/embeddings\n    model: {provider: chatonly}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml")
    assert [str(issue) for issue in caught.value.issues] == [
        "x.yaml:4: route 'e': model.provider: provider 'chatonly' does not offer llm/v1/embeddings "
        "(it offers llm/v1/chat), so this model could never serve this route"
    ]
    with pytest.raises(ConfigError):  # the same for a route created at run time
        parse_route({"name": "e", "route_type": "llm/v1/embeddings", "model": {"provider": "chatonly"}})


def test_config_parse_route_uses_the_same_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_route({"name": "x", "route_type": "llm/v1/chat", "model": {"provider": "fake", "confg": {}}})
    assert (
        str(caught.value) == "<request>: route 'x': model.confg: unknown key 'confg'; did you mean 'config'?"
    )
    route = parse_route({"name": "x", "route_type": "llm/v1/chat", "model": {"provider": "fake"}})
    assert isinstance(route, RouteConfig)


def test_config_seed_names_are_importable_and_programmatic_use_works() -> None:
    model = Model(
        provider="openai",
        name="gpt",
        config={
            "openai_api_key": "sk-x",
            "openai_api_type": "AzureAD",
            "openai_api_base": "https://h",
            "openai_api_version": "v",
            "openai_deployment_name": "d",
        },
    )
    assert isinstance(model.config, OpenAIConfig)
    assert model.config.openai_api_type is OpenAIAPIType.AZUREAD
    assert isinstance(model.config.openai_api_key, Secret)
    config = GatewayConfig(routes=[RouteConfig(name="r", route_type="llm/v1/chat", model=model)])
    assert config.routes[0].to_route().model.provider == "openai"
    from gateway_server import config as config_module

    for name in (
        "GatewayConfig",
        "RouteConfig",
        "Model",
        "ModelInfo",
        "Route",
        "RouteType",
        "Provider",
        "OpenAIConfig",
        "OpenAIAPIType",
    ):
        assert hasattr(config_module, name), name


def test_config_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert "config file not found" in str(caught.value) and "absent.yaml" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (".", "dots only"),
        ("..", "dots only"),
        ("...", "dots only"),
        ("a" * 100_000, "at most 128"),
        ("a" * 129, "at most 128"),
    ],
)
def test_config_route_names_are_bounded_and_never_dots_only(name: str, problem: str) -> None:
    body = {"name": name, "route_type": "llm/v1/chat", "model": {"provider": "fake"}}
    with pytest.raises(ConfigError) as info:
        parse_route(body)
    assert problem in info.value.message
    assert len(info.value.message) < 600  # a 100,000-character name is not echoed back whole
    with pytest.raises(ConfigError, match=problem):
        parse_config(f"routes:\n  - {{name: '{name}', route_type: llm/v1/chat, model: {{provider: fake}}}}\n")


def test_config_route_names_that_stay_valid() -> None:
    for name in ("a" * 128, ".hidden", "v1.2", "a..b", "_"):
        body = {"name": name, "route_type": "llm/v1/chat", "model": {"provider": "fake"}}
        assert parse_route(body).name == name


def test_config_credentials_are_validated_and_located(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_UNSET_CRED", raising=False)
    text = """\
credentials:
  good: {provider: openai, config: {openai_api_key: sk-x}}
  unset: {provider: openai, config: {openai_api_key: $GW_TEST_UNSET_CRED}}
  typo: {provider: opena, config: {}}
  ..: {provider: openai, config: {openai_api_key: sk-x}}
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: m, credentials: good, config: {openai_api_key: sk-y}}
  - name: missing
    route_type: llm/v1/chat
    model: {provider: openai, name: m, credentials: nope}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "g.yaml")
    lines = info.value.message.splitlines()
    assert any(
        line.startswith("g.yaml:3: credentials.unset.config.openai_api_key:") and "GW_TEST_UNSET_CRED" in line
        for line in lines
    )
    assert any(
        line.startswith("g.yaml:4: credentials.typo.provider: unknown provider 'opena'") for line in lines
    )
    assert any(
        line.startswith("g.yaml:5: credentials...:") or "'..' is not a valid credential name" in line
        for line in lines
    )
    assert any(
        "route 'chat': model.config.openai_api_key: a key comes from credential 'good'" in line
        for line in lines
    )
    assert any("route 'missing': model.credentials: unknown credential 'nope'" in line for line in lines)

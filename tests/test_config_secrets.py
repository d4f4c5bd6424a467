"""WebSocketConfig's secrets: the API key stays secret (reprs, errors), how it is resolved
(the environment, a callable), and the clear-text guard with the newer options."""

from __future__ import annotations

from typing import Any

import pytest

from nexus_reactive.config import API_KEY_ENV, WebSocketConfig
from nexus_reactive.errors import ConfigError

from .test_config import SECRET


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


# == the secret stays secret ===================================================================


def test_repr_and_str_never_contain_the_api_key() -> None:
    config = WebSocketConfig(api_key=SECRET, headers={"x-trace": "t"})

    for text in (repr(config), str(config)):
        assert SECRET not in text
        assert "api_key=<set>" in text
        assert "ws://localhost:8000" in text


def test_repr_without_any_key_says_none(no_env_key: None) -> None:
    assert "api_key=None" in repr(WebSocketConfig())


def test_repr_shows_no_proxy_as_none() -> None:
    assert "proxy=None," in repr(WebSocketConfig())
    proxied = WebSocketConfig("wss://nexus.example", proxy="http://user:secret@proxy.example:3128")
    shown = repr(proxied)
    assert "proxy='http://" in shown and "secret" not in shown


def test_repr_says_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, SECRET)

    text = repr(WebSocketConfig())

    assert "api_key=<from NEXUS_API_KEY>" in text
    assert SECRET not in text
    # A key given outright wins over the environment, and says so.
    assert "api_key=<set>" in repr(WebSocketConfig(api_key="other"))


def test_repr_with_a_key_callable_does_not_reveal_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")

    def provide_key() -> str:
        return SECRET

    text = repr(WebSocketConfig(api_key=provide_key))

    assert "api_key=<callable>" in text
    assert SECRET not in text


def test_repr_shows_header_names_but_not_values() -> None:
    text = repr(WebSocketConfig(headers={"Authorization": SECRET, "X-Trace": "abc"}))

    assert "Authorization" in text
    assert SECRET not in text


def test_validation_errors_never_contain_the_api_key() -> None:
    with pytest.raises(ConfigError) as info:
        WebSocketConfig(api_key=SECRET, url="http://bad", reconnect_interval=-1)

    assert SECRET not in str(info.value)


# == resolve_api_key ===========================================================================


async def test_resolve_api_key_from_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")

    assert await WebSocketConfig(api_key=SECRET).resolve_api_key() == SECRET


async def test_resolve_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "env-key-42")

    assert await WebSocketConfig().resolve_api_key() == "env-key-42"


async def test_resolve_api_key_reads_the_environment_at_each_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = WebSocketConfig()
    monkeypatch.setenv(API_KEY_ENV, "first")
    first = await config.resolve_api_key()
    monkeypatch.setenv(API_KEY_ENV, "rotated")

    assert (first, await config.resolve_api_key()) == ("first", "rotated")


async def test_resolve_api_key_from_a_sync_callable_each_attempt(no_env_key: None) -> None:
    calls: list[int] = []

    def provide() -> str:
        calls.append(1)
        return f"key-{len(calls)}"

    config = WebSocketConfig(api_key=provide)

    assert await config.resolve_api_key() == "key-1"
    assert await config.resolve_api_key() == "key-2"


async def test_resolve_api_key_from_an_async_callable(no_env_key: None) -> None:
    async def provide() -> str:
        return SECRET

    assert await WebSocketConfig(api_key=provide).resolve_api_key() == SECRET


async def test_missing_api_key_is_a_config_error_naming_both_sources(no_env_key: None) -> None:
    with pytest.raises(ConfigError) as info:
        await WebSocketConfig().resolve_api_key()

    assert "api_key" in str(info.value)
    assert "NEXUS_API_KEY" in str(info.value)


async def test_empty_env_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "")

    with pytest.raises(ConfigError, match="NEXUS_API_KEY"):
        await WebSocketConfig().resolve_api_key()


@pytest.mark.parametrize("returned", ["", None, 42])
async def test_callable_returning_no_key_is_a_config_error(no_env_key: None, returned: Any) -> None:
    with pytest.raises(ConfigError, match="no API key"):
        await WebSocketConfig(api_key=lambda: returned).resolve_api_key()


async def test_async_callable_returning_empty_is_a_config_error(no_env_key: None) -> None:
    async def provide() -> str:
        return ""

    with pytest.raises(ConfigError, match="api_key"):
        await WebSocketConfig(api_key=provide).resolve_api_key()


# == the clear-text guard and the newer options =================================================


@pytest.mark.parametrize(
    "url", ["ws://example.com", "ws://10.0.0.5:8000", "ws://0.0.0.0", "ws://localhost.evil.com"]
)
def test_ws_to_a_host_that_is_not_loopback_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="wss://") as info:
        WebSocketConfig(url=url, api_key=SECRET)

    assert "allow_insecure=True" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["ws://localhost", "ws://LOCALHOST:1", "ws://app.localhost", "ws://127.0.0.2", "ws://[::1]"],
)
def test_ws_to_loopback_is_allowed(url: str) -> None:
    assert WebSocketConfig(url=url).url == url


def test_allow_insecure_permits_ws_to_any_host() -> None:
    assert WebSocketConfig(url="ws://example.com", allow_insecure=True).allow_insecure is True


def test_repr_never_contains_the_signing_key() -> None:
    seed = "a1b2c3d4" * 8

    text = repr(WebSocketConfig(signing_key=seed))

    assert seed not in text
    assert "signing_key=<set>" in text


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"auth_timeout": 0}, "auth_timeout"),
        ({"rate": 0}, "rate"),
        ({"rate": -1.0}, "rate"),
        ({"burst": 0}, "burst"),
        ({"reset_backoff_after": float("inf")}, "reset_backoff_after"),
    ],
)
def test_newer_options_are_validated(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        WebSocketConfig(**options)

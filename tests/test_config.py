"""WebSocketConfig: defaults, validation, options and seconds (secret redaction and API-key
resolution: test_config_secrets.py)."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import pytest

from nexus_reactive import use_websocket, use_websocket_sync
from nexus_reactive.config import API_KEY_ENV, SECONDS_LIMITS, WebSocketConfig
from nexus_reactive.errors import ConfigError, NexusError, UnknownOption

SECRET = "sk-nexus-TOPSECRET-93c1f0"  # distinctive, so any leak is easy to spot


# == defaults ==============================================================================


def test_defaults_are_the_documented_ones_in_seconds() -> None:
    config = WebSocketConfig()

    assert config.url == "ws://localhost:8000"
    assert config.api_key is None
    assert config.reconnect_interval == 1.0
    assert config.max_reconnect_interval == 30.0
    assert config.reconnect_jitter == 0.5
    assert config.max_reconnect_attempts == 10
    assert config.reset_backoff_after == 10.0
    assert config.should_reconnect is None
    assert config.connect_timeout == 10.0
    assert config.request_timeout == 60.0
    assert config.heartbeat == 15.0
    assert config.outbox_limit == 10_000
    assert config.dedupe_size == 10_000
    assert config.max_messages is None  # deprecated: a store option
    assert config.batch_interval is None
    assert config.max_message_size == 4 * 1024 * 1024
    assert dict(config.headers) == {}


def test_api_key_env_name() -> None:
    assert API_KEY_ENV == "NEXUS_API_KEY"


def test_config_is_immutable() -> None:
    config = WebSocketConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.url = "ws://elsewhere:1"  # type: ignore[misc]


@pytest.mark.parametrize(
    "url",
    ["ws://localhost:8000", "wss://nexus.example.com/v1/ws", "ws://127.0.0.1:1/", "ws://[::1]:9"],
)
def test_ws_and_wss_urls_are_accepted(url: str) -> None:
    assert WebSocketConfig(url=url).url == url


@pytest.mark.parametrize(
    "options",
    [
        {"max_reconnect_attempts": None},
        {"max_reconnect_attempts": 0},
        {"request_timeout": None, "heartbeat": None},
        {"reconnect_jitter": 0.0},
        {"reconnect_jitter": 1.0},
        {"outbox_limit": 1, "max_message_size": 1},
    ],
)
def test_edge_values_that_are_allowed(options: dict[str, Any]) -> None:
    config = WebSocketConfig(**options)

    for name, value in options.items():
        assert getattr(config, name) == value


# == validation =============================================================================


@pytest.mark.parametrize(
    "url", ["http://localhost:8000", "https://x.example", "localhost:8000", "", "ws://", "ftp://h"]
)
def test_bad_url_is_a_config_error_with_an_example(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        WebSocketConfig(url=url)

    message = str(info.value)
    assert "ws://" in message and "wss://" in message
    assert repr(url) in message
    assert "ws://localhost:8000" in message


@pytest.mark.parametrize("url", ["wss://[::1", "wss://host.example:99999"])
def test_malformed_url_is_a_config_error(url: str) -> None:
    # Regression: yarl's plain ValueError used to escape.
    with pytest.raises(ConfigError):
        WebSocketConfig(url=url)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"reconnect_interval": -1.0}, "reconnect_interval"),
        ({"reconnect_interval": 0}, "reconnect_interval"),
        ({"max_reconnect_interval": -5}, "max_reconnect_interval"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"request_timeout": -1}, "request_timeout"),
        ({"heartbeat": 0}, "heartbeat"),
        ({"reconnect_jitter": -0.1}, "reconnect_jitter"),
        ({"reconnect_jitter": 1.5}, "reconnect_jitter"),
        ({"max_reconnect_attempts": -1}, "max_reconnect_attempts"),
        ({"outbox_limit": 0}, "outbox_limit"),
        ({"dedupe_size": 0}, "dedupe_size"),
        ({"max_messages": 0}, "max_messages"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"api_key": 1234}, "api_key"),
        ({"headers": {"X-Api-Key": "k"}}, "api_key"),
    ],
)
def test_invalid_values_are_config_errors_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        WebSocketConfig(**options)

    assert isinstance(info.value, NexusError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["reconnect_interval", "max_reconnect_interval"])
def test_interval_errors_say_the_unit(name: str) -> None:
    with pytest.raises(ConfigError, match="seconds"):
        WebSocketConfig(**{name: -1})


def test_negative_reset_backoff_after_is_a_config_error() -> None:
    # Regression: reset_backoff_after was not validated at all.
    with pytest.raises(ConfigError, match="reset_backoff_after"):
        WebSocketConfig(reset_backoff_after=-1.0)


@pytest.mark.parametrize("name", ["reconnect_interval", "connect_timeout", "request_timeout"])
def test_nan_interval_is_a_config_error(name: str) -> None:
    # Regression: `nan <= 0` is False, so NaN used to pass.
    with pytest.raises(ConfigError, match=name):
        WebSocketConfig(**{name: float("nan")})


# == from_options ===========================================================================


def test_from_options_builds_from_keywords() -> None:
    config = WebSocketConfig.from_options(url="wss://h.example", reconnect_interval=0.25)

    assert config.url == "wss://h.example"
    assert config.reconnect_interval == 0.25
    assert config.max_reconnect_attempts == 10


def test_from_options_overrides_a_base_config_and_keeps_the_rest() -> None:
    base = WebSocketConfig(url="wss://a.example:1", api_key=SECRET, heartbeat=None)

    config = WebSocketConfig.from_options(base, url="wss://b.example:2")

    assert config.url == "wss://b.example:2"
    assert config.api_key == SECRET
    assert config.heartbeat is None
    assert base.url == "wss://a.example:1"


def test_from_options_validates_the_result() -> None:
    with pytest.raises(ConfigError, match="reconnect_interval"):
        WebSocketConfig.from_options(WebSocketConfig(), reconnect_interval=-1)


def test_from_options_unknown_option_names_the_closest_one() -> None:
    with pytest.raises(UnknownOption) as info:
        WebSocketConfig.from_options(reconnect_intervall=2.0)

    assert str(info.value) == (
        "unknown option reconnect_intervall: did you mean reconnect_interval?"
    )


def test_from_options_names_every_unknown_option() -> None:
    with pytest.raises(ConfigError, match=r"unknown option bogus \(and typo\)"):
        WebSocketConfig.from_options(typo=1, bogus=2)


# == unknown keywords ===========================================================================


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("reconect_interval", "reconnect_interval"),
        ("apikey", "api_key"),
        ("heartbeet", "heartbeat"),
        ("request_timout", "request_timeout"),
        ("max_message", "max_messages"),
    ],
)
def test_an_unknown_keyword_names_the_closest_option(keyword: str, suggestion: str) -> None:
    with pytest.raises(UnknownOption) as info:
        WebSocketConfig(**{keyword: 1})

    error = info.value
    assert f"unknown option {keyword}: did you mean {suggestion}?" in str(error)
    assert (error.name, error.suggestion) == (keyword, suggestion)


def test_an_unknown_keyword_is_a_config_error_and_a_type_error() -> None:
    # TypeError is what Python raises for an unexpected keyword: code that caught it
    # around WebSocketConfig(...) keeps working.
    for catch in (ConfigError, TypeError, NexusError):
        with pytest.raises(catch):
            WebSocketConfig(reconect_interval=1.0)  # type: ignore[call-arg]


def test_the_typescript_spelling_names_the_python_one_and_its_unit() -> None:
    with pytest.raises(UnknownOption) as info:
        WebSocketConfig(reconnectInterval=1000)  # type: ignore[call-arg]

    assert str(info.value) == (
        "unknown option reconnectInterval: reconnectInterval is the TypeScript design's "
        "spelling; this option is reconnect_interval (in seconds, not milliseconds)"
    )
    assert info.value.suggestion == "reconnect_interval"
    with pytest.raises(UnknownOption, match=r"this option is max_reconnect_attempts$"):
        WebSocketConfig(maxReconnectAttempts=3)  # type: ignore[call-arg]


def test_a_store_option_given_to_the_config_says_where_it_goes() -> None:
    with pytest.raises(UnknownOption, match=r"share is a store option.*use_websocket\(\.\.\., "):
        WebSocketConfig(share=True)  # type: ignore[call-arg]
    with pytest.raises(UnknownOption, match=r"did you mean share\? \(a store option"):
        WebSocketConfig.from_options(shared=True)


def test_a_keyword_close_to_nothing_lists_the_options() -> None:
    with pytest.raises(UnknownOption) as info:
        WebSocketConfig(colour="blue")  # type: ignore[call-arg]

    assert info.value.suggestion is None
    assert "unknown option colour: the options are allow_insecure, api_key," in str(info.value)
    assert "reconnect_interval" in str(info.value)


def test_replace_checks_keywords_too() -> None:
    with pytest.raises(UnknownOption, match="did you mean heartbeat"):
        dataclasses.replace(WebSocketConfig(), heartbaet=5)


def test_the_constructor_keeps_its_signature_and_positional_url() -> None:
    assert list(inspect.signature(WebSocketConfig).parameters)[:2] == ["url", "api_key"]
    assert WebSocketConfig("ws://127.0.0.1:9").url == "ws://127.0.0.1:9"


async def test_use_websocket_keywords_get_the_same_errors() -> None:
    with pytest.raises(UnknownOption, match="did you mean reconnect_interval"):
        use_websocket(url="ws://127.0.0.1:1", reconect_interval=1.0)
    with pytest.raises(UnknownOption, match="did you mean share"):
        use_websocket(url="ws://127.0.0.1:1", shared=True)
    with pytest.raises(ConfigError, match=r"this option is in seconds: reconnect_interval=1\.0"):
        use_websocket(url="ws://127.0.0.1:1", reconnect_interval=1000)
    with pytest.raises(ConfigError, match=r"this option is in seconds: heartbeat=30\.0"):
        use_websocket(WebSocketConfig(url="ws://127.0.0.1:1"), heartbeat=30000)


def test_use_websocket_sync_keywords_get_the_same_errors() -> None:
    with pytest.raises(UnknownOption, match="did you mean reconnect_interval"):
        use_websocket_sync(url="ws://127.0.0.1:1", reconect_interval=1.0)
    with pytest.raises(ConfigError, match="looks like milliseconds"):
        use_websocket_sync(url="ws://127.0.0.1:1", reconnect_interval=1000)


# == seconds, not milliseconds =================================================================


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"reconnect_interval": 1000},
            "reconnect_interval=1000 looks like milliseconds (the TypeScript design's "
            "reconnectInterval); this option is in seconds: reconnect_interval=1.0 "
            "(at most 60, i.e. 1 min)",
        ),
        (
            {"reconnect_interval": 250},
            "reconnect_interval=250 looks like milliseconds (the TypeScript design's "
            "reconnectInterval); this option is in seconds: reconnect_interval=0.25 ",
        ),
        ({"reconnect_interval": 61}, "reconnect_interval=0.061 "),
        (
            {"max_reconnect_interval": 30000},
            "max_reconnect_interval=30000 looks like milliseconds (the TypeScript design's "
            "unit); this option is in seconds: max_reconnect_interval=30.0 (at most 600, "
            "i.e. 10 min)",
        ),
        ({"heartbeat": 15000.0}, "this option is in seconds: heartbeat=15.0 "),
        ({"connect_timeout": 10000}, "this option is in seconds: connect_timeout=10.0 "),
        ({"auth_timeout": 5000}, "this option is in seconds: auth_timeout=5.0 "),
        ({"reset_backoff_after": 10000}, "this option is in seconds: reset_backoff_after=10.0 "),
        (
            {"request_timeout": 60000},
            "request_timeout=60000 looks like milliseconds (the TypeScript design's unit); "
            "this option is in seconds: request_timeout=60.0 (at most 3600, i.e. 1 h)",
        ),
    ],
)
def test_an_interval_that_looks_like_milliseconds_is_refused_with_the_conversion(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        WebSocketConfig(**options)

    assert message in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_reconnect_interval": 120},
            "max_reconnect_interval=120 is 2 min; if you meant milliseconds (the TypeScript "
            "design's unit), this option is in seconds: max_reconnect_interval=0.12",
        ),
        ({"heartbeat": 90}, "heartbeat=90 is 1 min 30 s; if you meant milliseconds"),
        ({"request_timeout": 900}, "request_timeout=900 is 15 min; if you meant milliseconds"),
    ],
)
def test_an_unusual_but_possible_interval_is_warned_about(
    options: dict[str, Any], message: str
) -> None:
    with pytest.warns(UserWarning, match="if you meant milliseconds") as record:
        config = WebSocketConfig(**options)

    assert len(record) == 1
    assert message in str(record[0].message)
    assert record[0].filename == __file__  # the warning points at the caller's line
    for name, value in options.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    "options",
    [
        {"reconnect_interval": 60},
        {"max_reconnect_interval": 60, "heartbeat": 60, "connect_timeout": 60},
        {"auth_timeout": 60, "reset_backoff_after": 60},
        {"request_timeout": 600},
        {"request_timeout": None, "heartbeat": None},
    ],
)
def test_intervals_up_to_the_limits_are_taken_silently(options: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = WebSocketConfig(**options)
    for name, value in options.items():
        assert getattr(config, name) == value


def test_a_warned_interval_is_warned_about_once_through_from_options() -> None:
    with pytest.warns(UserWarning, match="request_timeout=900"):
        base = WebSocketConfig(request_timeout=900)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = WebSocketConfig.from_options(base, url="ws://127.0.0.1:1")
    assert config.request_timeout == 900


@pytest.mark.parametrize("name", ["reconnect_interval", "heartbeat", "request_timeout"])
def test_an_infinite_interval_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a finite number of seconds"):
        WebSocketConfig(**{name: float("inf")})


def test_every_limit_names_a_field_in_seconds() -> None:
    names = {f.name for f in dataclasses.fields(WebSocketConfig)}
    assert set(SECONDS_LIMITS) <= names
    for warn_above, refuse_above in SECONDS_LIMITS.values():
        assert warn_above is None or warn_above < refuse_above

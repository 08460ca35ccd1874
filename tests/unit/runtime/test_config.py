"""OperatorConfig / load_config: every key, precedence env > ConfigMap > defaults, and error messages."""

from __future__ import annotations

import logging

import pytest

from patronus import __version__
from patronus.operator.config import ConfigError, OperatorConfig, load_config

CM = "ConfigMap patronus-operator-config"


def test_defaults_match_the_contract():
    config = load_config({}, None)
    assert config.reconcile_interval == 30.0
    assert config.max_concurrent_reconciles == 5
    assert config.default_cpu_request == "1"
    assert config.default_memory_request == "2Gi"
    assert config.metrics_port == 8080
    assert config.health_probe_port == 8081
    assert config.bind_address == "0.0.0.0"
    assert config.leader_election_enabled is True
    assert config.leader_election_lease_duration == 15.0
    assert config.leader_election_renew_deadline == 10.0
    assert config.leader_election_retry_period == 2.0
    assert config.leader_election_namespace == "patronus-system"
    assert config.leader_election_id == "patronus-operator"
    assert config.watch_namespaces == ()
    assert config.watches_all_namespaces
    assert config.log_level == "info"
    assert config.log_format == "json"
    assert config.agent_image == f"ghcr.io/patronus/patronus-agent:v{__version__}"
    assert config.config_map_name == "patronus-operator-config"
    assert config.pod_name is None
    assert config.identity  # hostname-based when there is no POD_NAME
    assert config.ignored_configmap_keys == ()
    assert set(config.sources.values()) == {"default"}


# Every key, a raw value, and the parsed value it must give.
EVERY_KEY = [
    ("RECONCILE_INTERVAL", "1m30s", "reconcile_interval", 90.0),
    ("MAX_CONCURRENT_RECONCILES", "12", "max_concurrent_reconciles", 12),
    ("DEFAULT_CPU_REQUEST", "500m", "default_cpu_request", "500m"),
    ("DEFAULT_MEMORY_REQUEST", "4Gi", "default_memory_request", "4Gi"),
    ("METRICS_PORT", "9090", "metrics_port", 9090),
    ("HEALTH_PROBE_PORT", "9091", "health_probe_port", 9091),
    ("BIND_ADDRESS", "127.0.0.1", "bind_address", "127.0.0.1"),
    ("LEADER_ELECTION_ENABLED", "false", "leader_election_enabled", False),
    ("LEADER_ELECTION_LEASE_DURATION", "30s", "leader_election_lease_duration", 30.0),
    ("LEADER_ELECTION_RENEW_DEADLINE", "5s", "leader_election_renew_deadline", 5.0),
    ("LEADER_ELECTION_RETRY_PERIOD", "500ms", "leader_election_retry_period", 0.5),
    ("LEADER_ELECTION_NAMESPACE", "ops", "leader_election_namespace", "ops"),
    ("LEADER_ELECTION_ID", "patronus-lock", "leader_election_id", "patronus-lock"),
    ("WATCH_NAMESPACES", "a, b,,a", "watch_namespaces", ("a", "b")),
    ("LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("LOG_FORMAT", "console", "log_format", "console"),
    ("AGENT_IMAGE", "registry.local/agent:1.2", "agent_image", "registry.local/agent:1.2"),
    ("CONFIG_MAP_NAME", "other-config", "config_map_name", "other-config"),
    ("POD_NAME", "patronus-operator-7d9f", "pod_name", "patronus-operator-7d9f"),
    ("POD_NAMESPACE", "patronus", "pod_namespace", "patronus"),
]
CONFIGMAP_KEYS = [row for row in EVERY_KEY if row[0] not in ("CONFIG_MAP_NAME", "POD_NAME", "POD_NAMESPACE")]


def test_the_table_covers_every_key():
    assert {row[0] for row in EVERY_KEY} == set(OperatorConfig.KEYS)


@pytest.mark.parametrize(("key", "raw", "field", "expected"), EVERY_KEY)
def test_every_key_from_the_environment(key, raw, field, expected):
    config = load_config({key: raw}, None)
    assert getattr(config, field) == expected
    assert config.sources[key] == "environment"


@pytest.mark.parametrize(("key", "raw", "field", "expected"), CONFIGMAP_KEYS)
def test_every_key_from_the_configmap(key, raw, field, expected):
    config = load_config({}, {key: raw})
    assert getattr(config, field) == expected
    assert config.sources[key] == CM


def test_environment_beats_configmap_beats_default():
    config = load_config(
        {"MAX_CONCURRENT_RECONCILES": "9", "PATH": "/usr/bin"},
        {"MAX_CONCURRENT_RECONCILES": "3", "RECONCILE_INTERVAL": "10s"},
    )
    assert config.max_concurrent_reconciles == 9
    assert config.sources["MAX_CONCURRENT_RECONCILES"] == "environment"
    assert config.reconcile_interval == 10.0
    assert config.sources["RECONCILE_INTERVAL"] == CM
    assert config.metrics_port == 8080
    assert config.sources["METRICS_PORT"] == "default"


def test_empty_values_count_as_unset():
    config = load_config(
        {"MAX_CONCURRENT_RECONCILES": "", "POD_NAME": ""}, {"MAX_CONCURRENT_RECONCILES": "4"}
    )
    assert config.max_concurrent_reconciles == 4
    assert config.pod_name is None


def test_lease_namespace_defaults_to_the_pod_namespace():
    assert load_config({"POD_NAMESPACE": "ops"}).leader_election_namespace == "ops"
    explicit = load_config({"POD_NAMESPACE": "ops", "LEADER_ELECTION_NAMESPACE": "locks"})
    assert explicit.leader_election_namespace == "locks"


def test_identity_is_the_pod_name_when_there_is_one():
    assert load_config({"POD_NAME": "patronus-operator-abc"}).identity == "patronus-operator-abc"
    # Without one, two processes on the same host still get different identities.
    assert load_config({}).identity != load_config({}).identity


def test_unknown_configmap_keys_are_returned_and_logged(caplog):
    with caplog.at_level(logging.WARNING):
        config = load_config({}, {"RECONCILE_INTERVAL": "1m", "RECONCILE_INTERVALL": "2m", "POD_NAME": "x"})
    assert config.ignored_configmap_keys == ("POD_NAME", "RECONCILE_INTERVALL")
    assert config.reconcile_interval == 60.0
    assert config.pod_name is None  # per-pod keys are only taken from the environment
    assert "RECONCILE_INTERVALL" in caplog.text


BAD_VALUES = [
    ("RECONCILE_INTERVAL", "30", "must be a duration such as 30s"),
    ("RECONCILE_INTERVAL", "0s", "longer than 0s"),
    ("MAX_CONCURRENT_RECONCILES", "zero", "must be an integer >= 1"),
    ("MAX_CONCURRENT_RECONCILES", "0", "must be an integer >= 1"),
    ("MAX_CONCURRENT_RECONCILES", "2.5", "must be an integer >= 1"),
    ("DEFAULT_CPU_REQUEST", "one", "must be a Kubernetes quantity"),
    ("DEFAULT_MEMORY_REQUEST", "2GB", "must be a Kubernetes quantity"),
    ("METRICS_PORT", "99999", "must be an integer from 1 to 65535"),
    ("HEALTH_PROBE_PORT", "http", "must be an integer from 1 to 65535"),
    ("BIND_ADDRESS", "0.0.0.0 ::", "without spaces"),
    ("LEADER_ELECTION_ENABLED", "maybe", "must be true or false"),
    ("LEADER_ELECTION_LEASE_DURATION", "15", "must be a duration"),
    ("LEADER_ELECTION_RENEW_DEADLINE", "-1s", "must be a duration"),
    ("LEADER_ELECTION_RETRY_PERIOD", "soon", "must be a duration"),
    ("LEADER_ELECTION_NAMESPACE", "Patronus_System", "RFC 1123"),
    ("LEADER_ELECTION_ID", "Patronus Lock", "RFC 1123"),
    ("WATCH_NAMESPACES", "a,B_c", "'B_c' is not a namespace name"),
    ("LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
    ("LOG_FORMAT", "xml", "must be one of json, console"),
    ("AGENT_IMAGE", "my image", "without spaces"),
]


@pytest.mark.parametrize(("key", "raw", "rule"), BAD_VALUES)
def test_a_bad_environment_value_names_key_value_and_source(key, raw, rule):
    with pytest.raises(ConfigError) as caught:
        load_config({key: raw}, None)
    assert caught.value.problems[0].startswith(f'{key}="{raw}" (from environment): ')
    assert rule in str(caught.value)


@pytest.mark.parametrize(("key", "raw", "rule"), BAD_VALUES)
def test_a_bad_configmap_value_names_key_value_and_source(key, raw, rule):
    with pytest.raises(ConfigError) as caught:
        load_config({}, {key: raw})
    assert caught.value.problems[0].startswith(f'{key}="{raw}" (from {CM}): ')
    assert rule in str(caught.value)


def test_the_exact_message_for_a_bad_integer():
    with pytest.raises(ConfigError) as caught:
        load_config({"MAX_CONCURRENT_RECONCILES": "zero"})
    assert caught.value.problems == [
        'MAX_CONCURRENT_RECONCILES="zero" (from environment): must be an integer >= 1'
    ]


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_config(
            {"LOG_LEVEL": "loud"}, {"METRICS_PORT": "-1", "RECONCILE_INTERVAL": "x"}, configmap_name="cm"
        )
    assert sorted(caught.value.problems) == [
        'LOG_LEVEL="loud" (from environment): must be one of debug, info, warning, error',
        'METRICS_PORT="-1" (from ConfigMap cm): must be an integer from 1 to 65535',
        'RECONCILE_INTERVAL="x" (from ConfigMap cm): must be a duration such as 30s, 1m30s or 500ms',
    ]


def test_a_valid_environment_value_hides_a_bad_configmap_value():
    assert load_config({"METRICS_PORT": "9000"}, {"METRICS_PORT": "nope"}).metrics_port == 9000


@pytest.mark.parametrize(
    ("environ", "configmap", "message"),
    [
        (
            {"LEADER_ELECTION_RENEW_DEADLINE": "20s"},
            {},
            'LEADER_ELECTION_RENEW_DEADLINE="20s" (from environment) must be shorter than '
            'LEADER_ELECTION_LEASE_DURATION="15s" (default)',
        ),
        (
            {},
            {"LEADER_ELECTION_RETRY_PERIOD": "9s"},
            'LEADER_ELECTION_RENEW_DEADLINE="10s" (default) must be longer than 1.2 x '
            f'LEADER_ELECTION_RETRY_PERIOD="9s" (from {CM})',
        ),
        (
            {"LEADER_ELECTION_LEASE_DURATION": "800ms", "LEADER_ELECTION_RENEW_DEADLINE": "500ms"},
            {"LEADER_ELECTION_RETRY_PERIOD": "100ms"},
            'LEADER_ELECTION_LEASE_DURATION="800ms" (from environment) must be at least 1s',
        ),
        (
            {"METRICS_PORT": "8081"},
            {},
            'METRICS_PORT="8081" (from environment) and HEALTH_PROBE_PORT="8081" (default) must differ',
        ),
    ],
)
def test_cross_field_rules(environ, configmap, message):
    with pytest.raises(ConfigError) as caught:
        load_config(environ, configmap)
    assert caught.value.problems[0].startswith(message)


def test_operator_config_reads_os_environ_directly(monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_RECONCILES", "7")
    monkeypatch.setenv("RECONCILE_INTERVAL", "2m")
    config = OperatorConfig()
    assert config.max_concurrent_reconciles == 7
    assert config.reconcile_interval == 120.0


def test_load_config_ignores_os_environ(monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_RECONCILES", "7")
    assert load_config({}, None).max_concurrent_reconciles == 5

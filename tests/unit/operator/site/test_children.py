"""The Site's children: names, labels, owner, least-privilege RBAC and determinism of every manifest."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
from typing import Any

import pytest

from patronus.api import GROUP_VERSION, Site
from patronus.operator.config import OperatorConfig, load_config
from patronus.operator.site import children as ch
from patronus.operator.site.children import data, names, rbac, workload
from patronus.operator.site.kinds import CHILD_KINDS
from patronus.wireguard.keys import generate_private_key, public_key_for

NAMESPACE = "sdwan"
UID = "6f1c2d3e-0000-4000-8000-000000000001"
DIGEST = "0123456789abcdef"
CONFIG_JSON = json.dumps({"site": "branch-nyc", "peers": []}, sort_keys=True)
USER_PUBLIC_KEY = public_key_for(generate_private_key())
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def make_site(name: str = "branch-nyc", **spec: Any) -> tuple[dict[str, Any], Site]:
    """A Site as the cache holds it, and its parsed model."""
    body: dict[str, Any] = {"wireguard": {"endpoints": ["203.0.113.10:51820"]}, **spec}
    obj = {
        "apiVersion": GROUP_VERSION,
        "kind": "Site",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": UID, "generation": 3},
        "spec": body,
    }
    return obj, Site.model_validate(obj)


@pytest.fixture
def config() -> OperatorConfig:
    return load_config(
        {
            "AGENT_IMAGE": "registry.example/patronus-agent:v1",
            "DEFAULT_CPU_REQUEST": "250m",
            "DEFAULT_MEMORY_REQUEST": "256Mi",
        }
    )


def build(
    config: OperatorConfig,
    obj: dict[str, Any],
    site: Site,
    *,
    external: bool = False,
    secret_name: str | None = None,
    generated: bool = True,
    paths: list[str] | None = None,
    config_json: str = CONFIG_JSON,
) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    key = None
    if generated and not external:
        private = generate_private_key()
        key = (private, public_key_for(private))
    built = ch.desired_children(
        obj,
        site,
        config,
        external=external,
        secret_name=secret_name,
        generated_key=key,
        config_json=config_json,
        config_digest=DIGEST,
        path_names=["nyc-to-sf"] if paths is None else paths,
    )
    return built, key


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {child["kind"]: child for child in children}


def walk(value: Any) -> list[Any]:
    """Every dict and list inside ``value``."""
    found: list[Any] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found += walk(item)
    elif isinstance(value, list):
        found.append(value)
        for item in value:
            found += walk(item)
    return found


SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "generated-key-with-storage": ({"resources": {"storage": "10Gi"}}, {}),
    "user-secret": (
        {
            "wireguard": {
                "endpoints": ["203.0.113.10:51820"],
                "publicKey": USER_PUBLIC_KEY,
                "privateKeySecretRef": {"name": "nyc-key", "key": "wg.key"},
            }
        },
        {"secret_name": "nyc-key", "generated": False},
    ),
    "external": (
        {"wireguard": {"endpoints": ["203.0.113.10:51820"], "publicKey": USER_PUBLIC_KEY}},
        {"external": True},
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, config: OperatorConfig) -> list[dict[str, Any]]:
    spec, options = SCENARIOS[request.param]
    obj, site = make_site(**spec)
    return build(config, obj, site, **options)[0]


# -- names, labels, owners ---------------------------------------------------------------------------


def test_every_child_has_name_namespace_labels_and_owner(scenario: list[dict[str, Any]]) -> None:
    names = ch.child_names("branch-nyc")
    expected_names = {
        "Secret": names.secret,
        "ConfigMap": names.config_map,
        "ServiceAccount": names.service_account,
        "Role": names.role,
        "RoleBinding": names.role_binding,
        "Deployment": names.deployment,
        "PersistentVolumeClaim": names.pvc,
        "Service": names.service,
        "Lease": names.lease,
    }
    for child in scenario:
        metadata = child["metadata"]
        assert metadata["name"] == expected_names[child["kind"]]
        assert metadata["namespace"] == NAMESPACE
        assert metadata["labels"] == {
            "app.kubernetes.io/name": "patronus-agent",
            "app.kubernetes.io/instance": "branch-nyc",
            "app.kubernetes.io/component": "sdwan-core",
            "app.kubernetes.io/managed-by": "patronus-operator",
            "sdwan.patronus.dev/site": "branch-nyc",
        }
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "sdwan.patronus.dev/v1alpha1",
                "kind": "Site",
                "name": "branch-nyc",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_child_names_follow_the_site_name() -> None:
    names = ch.child_names("branch-nyc")
    assert names == ch.ChildNames(
        secret="branch-nyc-wireguard",
        config_map="branch-nyc-agent",
        service_account="branch-nyc-agent",
        role="branch-nyc-agent",
        role_binding="branch-nyc-agent",
        deployment="branch-nyc-agent",
        pvc="branch-nyc-data",
        lease="branch-nyc-agent",
        service="branch-nyc-wg",
    )


def test_long_site_names_are_shortened_with_a_hash(config: OperatorConfig) -> None:
    first, second = "a" * 240 + "-one", "a" * 240 + "-two"
    for site_name in (first, second):
        for name in vars_of(ch.child_names(site_name)):
            assert len(name) <= 63
            assert DNS_LABEL.fullmatch(name), name
        for value in names.child_labels(site_name).values():
            assert len(value) <= 63
            assert LABEL_VALUE.fullmatch(value), value
    assert set(vars_of(ch.child_names(first))).isdisjoint(vars_of(ch.child_names(second)))
    assert ch.child_names(first).config_map.endswith("-agent")
    assert names.child_labels(first)[ch.SITE_LABEL] != names.child_labels(second)[ch.SITE_LABEL]
    obj, site = make_site(first)
    for child in build(config, obj, site)[0]:
        assert len(child["metadata"]["name"]) <= 63


def vars_of(names: ch.ChildNames) -> list[str]:
    return [getattr(names, field.name) for field in dataclasses.fields(names)]


def test_names_that_are_not_labels_get_a_hash() -> None:
    dotted, dashed = ch.child_names("branch.nyc"), ch.child_names("branch-nyc")
    assert DNS_LABEL.fullmatch(dotted.config_map)
    assert dotted.config_map != dashed.config_map
    assert names.child_labels("branch.nyc")[ch.SITE_LABEL] == "branch.nyc"
    digits = ch.child_names("1branch")
    assert digits.config_map == "1branch-agent"
    assert DNS_1035.fullmatch(digits.service), "a Service name must start with a letter"


def test_owner_reference_needs_a_uid() -> None:
    obj, _ = make_site()
    del obj["metadata"]["uid"]
    with pytest.raises(ValueError, match="uid"):
        names.owner_reference(obj)


def test_site_without_namespace_is_rejected() -> None:
    obj, _ = make_site()
    del obj["metadata"]["namespace"]
    with pytest.raises(ValueError, match="namespace"):
        rbac.service_account(obj)


# -- the set of children --------------------------------------------------------------------------------


def test_full_set_in_apply_order(config: OperatorConfig) -> None:
    obj, site = make_site(resources={"storage": "10Gi"})
    kinds = [child["kind"] for child in build(config, obj, site)[0]]
    assert kinds == [
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Lease",
        "Deployment",
        "PersistentVolumeClaim",
        "Service",
    ]


def test_no_secret_when_the_user_manages_the_key(config: OperatorConfig) -> None:
    obj, site = make_site(**SCENARIOS["user-secret"][0])
    kinds = [child["kind"] for child in build(config, obj, site, secret_name="nyc-key", generated=False)[0]]
    assert kinds == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Lease", "Deployment", "Service"]


def test_external_site_gets_no_workload(config: OperatorConfig) -> None:
    obj, site = make_site(resources={"storage": "10Gi"}, **SCENARIOS["external"][0])
    kinds = [child["kind"] for child in build(config, obj, site, external=True)[0]]
    assert kinds == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Lease"]


def test_external_site_with_a_generated_key_is_a_bug(config: OperatorConfig) -> None:
    obj, site = make_site()
    private = generate_private_key()
    with pytest.raises(ValueError, match="external"):
        ch.desired_children(
            obj,
            site,
            config,
            external=True,
            secret_name=None,
            generated_key=(private, public_key_for(private)),
            config_json="{}",
            config_digest=DIGEST,
            path_names=[],
        )


def test_pvc_only_with_storage(config: OperatorConfig) -> None:
    obj, site = make_site()
    plain = by_kind(build(config, obj, site)[0])
    assert "PersistentVolumeClaim" not in plain
    mounts = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert workload.DATA_DIR not in {mount["mountPath"] for mount in mounts}

    obj, site = make_site(resources={"storage": "10Gi"})
    stored = by_kind(build(config, obj, site)[0])
    pvc = stored["PersistentVolumeClaim"]
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    pod = stored["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "branch-nyc-data"}} in pod["volumes"]
    assert {"name": "data", "mountPath": "/var/lib/patronus"} in pod["containers"][0]["volumeMounts"]


def test_no_empty_maps_or_lists(scenario: list[dict[str, Any]]) -> None:
    """The API server drops empty collections; one in a manifest would differ from the stored object."""
    for child in scenario:
        for value in walk(child):
            assert value, f"empty collection in {child['kind']}"


def test_output_is_deterministic(config: OperatorConfig) -> None:
    obj, site = make_site(
        resources={"storage": "10Gi", "cpu": "2"},
        underlays=[{"name": "fiber", "endpoint": "203.0.113.10:51820"}],
    )
    private = generate_private_key()
    key = (private, public_key_for(private))
    arguments: dict[str, Any] = {
        "external": False,
        "secret_name": None,
        "generated_key": key,
        "config_json": CONFIG_JSON,
        "config_digest": DIGEST,
    }
    first = ch.desired_children(obj, site, config, path_names=["b", "a", "b"], **arguments)
    second = ch.desired_children(
        copy.deepcopy(obj),
        Site.model_validate(obj),
        config,
        path_names=["a", "b"],
        **arguments,
    )
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


# -- Secret and ConfigMap ---------------------------------------------------------------------------------


def test_key_secret_uses_data_not_string_data(config: OperatorConfig) -> None:
    obj, site = make_site()
    children, key = build(config, obj, site)
    assert key is not None
    secret = by_kind(children)["Secret"]
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["privateKey"]).decode() == key[0]
    assert base64.b64decode(secret["data"]["publicKey"]).decode() == key[1]


def test_key_secret_rejects_a_mismatched_pair_without_showing_the_key() -> None:
    obj, _ = make_site()
    private = generate_private_key()
    with pytest.raises(ValueError, match="does not belong") as info:
        data.key_secret(obj, private, USER_PUBLIC_KEY)
    assert private not in str(info.value)


def test_config_map_never_holds_the_private_key(config: OperatorConfig) -> None:
    obj, site = make_site()
    children, key = build(config, obj, site)
    assert key is not None
    config_map = by_kind(children)["ConfigMap"]
    assert config_map["data"] == {"config.json": CONFIG_JSON}
    assert config_map["metadata"]["annotations"] == {"sdwan.patronus.dev/config-digest": DIGEST}
    with_address = data.agent_config_map(obj, CONFIG_JSON, DIGEST, overlay_address="100.96.0.7")
    assert with_address["metadata"]["annotations"] == {
        "sdwan.patronus.dev/config-digest": DIGEST,
        "sdwan.patronus.dev/overlay-address": "100.96.0.7",
    }
    assert key[0] not in json.dumps(config_map)
    for child in children:
        if child["kind"] != "Secret":
            assert key[0] not in json.dumps(child), child["kind"]


def test_a_config_that_contains_the_private_key_is_refused(config: OperatorConfig) -> None:
    obj, site = make_site()
    private = generate_private_key()
    with pytest.raises(ValueError, match="contains the private key") as info:
        ch.desired_children(
            obj,
            site,
            config,
            external=False,
            secret_name=None,
            generated_key=(private, public_key_for(private)),
            config_json=json.dumps({"key": private}),
            config_digest=DIGEST,
            path_names=[],
        )
    assert private not in str(info.value)


# -- Role -------------------------------------------------------------------------------------------------


def rules_by_resource(role: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["resources"][0]: rule for rule in role["rules"]}


@pytest.mark.parametrize("paths", [[], ["p1", "p2"]], ids=["no-paths", "paths"])
@pytest.mark.parametrize("secret_name", [None, "nyc-key", "branch-nyc-wireguard"])
def test_role_is_least_privilege(paths: list[str], secret_name: str | None) -> None:
    obj, _ = make_site()
    role = rbac.agent_role(obj, path_names=paths, secret_name=secret_name)
    for rule in role["rules"]:
        assert len(rule["resources"]) == 1
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field]
        if "resourceNames" in rule:
            assert rule["resourceNames"], f"empty resourceNames grants every {rule['resources'][0]}"
        else:
            assert rule["resources"] == ["events"], "only events cannot be limited by name"
        if WRITE_VERBS & set(rule["verbs"]):
            assert rule["resources"][0].endswith("/status") or rule["resources"] in (["events"], ["leases"])
    rules = rules_by_resource(role)
    assert rules["leases"]["resourceNames"] == [ch.child_names("branch-nyc").lease], "its own Lease only"
    assert rules["leases"]["verbs"] == ["get", "patch"], "the operator creates the Lease; the agent renews it"
    assert rules["events"]["verbs"] == ["create"], "the agent creates Events; it changes none"
    assert "policies" not in rules, "Policy status is the operator's"
    assert "policies/status" not in rules
    if paths:
        assert rules["paths"]["resourceNames"] == sorted(paths)
        assert rules["paths/status"]["verbs"] == ["get", "patch"]
    else:
        assert "paths" not in rules
        assert "paths/status" not in rules
    if secret_name:
        assert rules["secrets"] == {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": [secret_name],
        }
    else:
        assert "secrets" not in rules, "an external site's agent holds its own key"


def test_role_rules_exactly() -> None:
    obj, _ = make_site()
    role = rbac.agent_role(obj, path_names=["nyc-to-sf"], secret_name="branch-nyc-wireguard")
    group = "sdwan.patronus.dev"
    read = ["get", "list", "watch"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": read,
            "resourceNames": ["branch-nyc-agent"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["branch-nyc-wireguard"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "patch"],
            "resourceNames": ["branch-nyc-agent"],
        },
        {"apiGroups": [group], "resources": ["paths"], "verbs": read, "resourceNames": ["nyc-to-sf"]},
        {
            "apiGroups": [group],
            "resources": ["paths/status"],
            "verbs": ["get", "patch"],
            "resourceNames": ["nyc-to-sf"],
        },
        {"apiGroups": [group], "resources": ["sites"], "verbs": read, "resourceNames": ["branch-nyc"]},
        {
            "apiGroups": [group],
            "resources": ["sites/status"],
            "verbs": ["get", "patch"],
            "resourceNames": ["branch-nyc"],
        },
    ]


def test_role_binding_binds_the_service_account() -> None:
    obj, _ = make_site()
    binding = rbac.agent_role_binding(obj)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "branch-nyc-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "branch-nyc-agent", "namespace": NAMESPACE}
    ]


# -- Deployment -------------------------------------------------------------------------------------------


def deployment(
    config: OperatorConfig, secret_name: str | None = "branch-nyc-wireguard", **spec: Any
) -> dict[str, Any]:
    obj, site = make_site(**spec)
    return workload.agent_deployment(obj, site, config, secret_name=secret_name)


def container_of(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_deployment_runs_one_agent(config: OperatorConfig) -> None:
    manifest = deployment(config)
    spec = manifest["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    template = spec["template"]
    assert template["metadata"] == {"labels": names.child_labels("branch-nyc")}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert template["spec"]["serviceAccountName"] == "branch-nyc-agent"
    container = container_of(manifest)
    assert container["name"] == "agent"
    assert container["image"] == "registry.example/patronus-agent:v1"
    assert container["args"] == [
        "agent",
        "run",
        "--site",
        "branch-nyc",
        "--config-map",
        "branch-nyc-agent",
        "--heartbeat-lease",
        "branch-nyc-agent",
        "--key-file",
        "/etc/patronus/keys/privateKey",
        "--health-port",
        "8081",
        "--metrics-port",
        "9102",
    ]
    assert container["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "PATRONUS_SITE", "value": "branch-nyc"},
    ]


def test_the_agent_is_told_its_shortened_names() -> None:
    """A dotted or long site name gets hashed child names: the agent is given them, never derives them."""
    args = workload.agent_args("branch.nyc", ch.child_names("branch.nyc"), key_file=False)
    assert args[args.index("--config-map") + 1] == ch.child_names("branch.nyc").config_map
    assert args[args.index("--config-map") + 1] != "branch.nyc-agent"
    assert "--key-file" not in args


def test_a_configuration_change_leaves_the_pod_alone_and_a_new_image_rolls_it(config: OperatorConfig) -> None:
    obj, site = make_site()
    key = generate_private_key()
    pair = (key, public_key_for(key))

    def pod_template(config_json: str, operator_config: OperatorConfig) -> dict[str, Any]:
        built = ch.desired_children(
            obj,
            site,
            operator_config,
            external=False,
            secret_name=None,
            generated_key=pair,
            config_json=config_json,
            config_digest=str(hash(config_json)),
            path_names=[],
        )
        return dict(by_kind(built)["Deployment"]["spec"]["template"])

    assert pod_template('{"a": 1}', config) == pod_template('{"a": 2}', config)
    newer = load_config({"AGENT_IMAGE": "registry.example/patronus-agent:v2"})
    assert pod_template('{"a": 1}', config) != pod_template('{"a": 1}', newer)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (None, {"cpu": "250m", "memory": "256Mi"}),
        ({"storage": "1Gi"}, {"cpu": "250m", "memory": "256Mi"}),
        ({"cpu": "2"}, {"cpu": "2", "memory": "256Mi"}),
        ({"memory": "4Gi"}, {"cpu": "250m", "memory": "4Gi"}),
        ({"cpu": "500m", "memory": "1Gi"}, {"cpu": "500m", "memory": "1Gi"}),
    ],
)
def test_requests_fall_back_to_operator_defaults(
    config: OperatorConfig, resources: dict[str, str] | None, expected: dict[str, str]
) -> None:
    spec: dict[str, Any] = {"resources": resources} if resources is not None else {}
    assert container_of(deployment(config, **spec))["resources"] == {"requests": expected}


def test_agent_has_net_admin(config: OperatorConfig) -> None:
    security = container_of(deployment(config))["securityContext"]
    assert security["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    assert security["allowPrivilegeEscalation"] is False
    assert "privileged" not in security


def test_agent_gets_the_tun_device_and_nothing_else_of_the_host(config: OperatorConfig) -> None:
    pod = deployment(config)["spec"]["template"]["spec"]
    host_paths = [volume["hostPath"] for volume in pod["volumes"] if "hostPath" in volume]
    assert host_paths == [{"path": "/dev/net/tun", "type": "CharDevice"}]
    mounts = {mount["name"]: mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
    assert mounts["dev-net-tun"] == "/dev/net/tun"


def test_privileged_listen_port_adds_net_bind_service(config: OperatorConfig) -> None:
    manifest = deployment(config, wireguard={"endpoints": ["203.0.113.10:500"], "listenPort": 500})
    assert "NET_BIND_SERVICE" in container_of(manifest)["securityContext"]["capabilities"]["add"]


def test_probes_and_ports(config: OperatorConfig) -> None:
    manifest = deployment(
        config,
        underlays=[
            {"name": "fiber", "endpoint": "203.0.113.10:51820"},
            {"name": "lte", "endpoint": "203.0.113.10:51820"},
            {"name": "sat", "endpoint": "203.0.113.10:51820", "listenPort": 52000},
        ],
    )
    container = container_of(manifest)
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "health"}}
    assert container["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "health"}}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8081, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
        {"name": "fiber", "containerPort": 51820, "protocol": "UDP"},
        {"name": "lte", "containerPort": 51821, "protocol": "UDP"},
        {"name": "sat", "containerPort": 52000, "protocol": "UDP"},
    ]


def test_generated_key_is_mounted_read_only(config: OperatorConfig) -> None:
    pod = deployment(config)["spec"]["template"]["spec"]
    assert {"name": "config", "configMap": {"name": "branch-nyc-agent"}} in pod["volumes"]
    assert {
        "name": "wireguard-key",
        "secret": {
            "secretName": "branch-nyc-wireguard",
            "defaultMode": 0o400,
            "items": [{"key": "privateKey", "path": "privateKey"}],
        },
    } in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/patronus", "readOnly": True} in mounts
    assert {"name": "wireguard-key", "mountPath": "/etc/patronus/keys", "readOnly": True} in mounts


def test_user_secret_key_is_mounted_as_private_key(config: OperatorConfig) -> None:
    manifest = deployment(config, secret_name="nyc-key", **SCENARIOS["user-secret"][0])
    volumes = {volume["name"]: volume for volume in manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["wireguard-key"]["secret"]["secretName"] == "nyc-key"
    assert volumes["wireguard-key"]["secret"]["items"] == [{"key": "wg.key", "path": "privateKey"}]
    args = container_of(manifest)["args"]
    assert args[args.index("--key-file") + 1] == "/etc/patronus/keys/privateKey"


def test_no_key_volume_without_a_secret(config: OperatorConfig) -> None:
    pod = deployment(config, secret_name=None)["spec"]["template"]["spec"]
    assert [volume["name"] for volume in pod["volumes"]] == ["config", "dev-net-tun"]


# -- Service ----------------------------------------------------------------------------------------------


def test_service_exposes_every_underlay(config: OperatorConfig) -> None:
    obj, site = make_site(
        wireguard={"endpoints": ["203.0.113.10:51820", "198.51.100.7:51900"], "listenPort": 51820},
        underlays=[
            {"name": "fiber", "endpoint": "203.0.113.10:51820", "listenPort": 51830},
            {"name": "lte", "endpoint": "198.51.100.7:51900", "listenPort": 51900},
        ],
    )
    service = workload.wireguard_service(obj, site)
    assert service["spec"]["type"] == "LoadBalancer"
    # Peers must reach an agent that is not Ready yet: it becomes Ready only once a tunnel is up.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/instance": "branch-nyc",
        "app.kubernetes.io/name": "patronus-agent",
    }
    assert service["spec"]["ports"] == [
        {"name": "fiber", "port": 51830, "targetPort": 51830, "protocol": "UDP"},
        {"name": "lte", "port": 51900, "targetPort": 51900, "protocol": "UDP"},
        {"name": "wireguard", "port": 51820, "targetPort": 51820, "protocol": "UDP"},
    ]


def test_service_without_underlays_uses_listen_port() -> None:
    obj, site = make_site(wireguard={"endpoints": ["203.0.113.10:4500"], "listenPort": 4500})
    assert workload.wireguard_service(obj, site)["spec"]["ports"] == [
        {"name": "wireguard", "port": 4500, "targetPort": 4500, "protocol": "UDP"}
    ]


def test_port_names_stay_unique() -> None:
    _, site = make_site(
        underlays=[
            {"name": "health", "endpoint": "203.0.113.10:51820", "listenPort": 51830},
            {"name": "wireguard", "endpoint": "203.0.113.10:51820", "listenPort": 51840},
        ]
    )
    ports = workload.wireguard_ports(site)
    assert ports == [("health-2", 51830), ("wireguard", 51840), ("wireguard-2", 51820)]
    _, metrics = make_site(underlays=[{"name": "metrics", "endpoint": "203.0.113.10:51820"}])
    assert workload.wireguard_ports(metrics)[0] == ("metrics-2", 51820)


def test_child_names_by_kind_cover_every_child() -> None:
    child_names = ch.child_names("branch-nyc")
    by_kind = child_names.by_kind()
    assert sorted(by_kind.values()) == sorted(dataclasses.astuple(child_names))
    assert by_kind["ConfigMap"] == child_names.config_map
    assert by_kind["PersistentVolumeClaim"] == child_names.pvc


def test_one_table_of_child_kinds() -> None:
    """ChildNames, the caches and the apply waves all come from CHILD_KINDS."""
    assert [child.field for child in CHILD_KINDS] == [f.name for f in dataclasses.fields(ch.ChildNames)]
    assert {child.resource.kind for child in CHILD_KINDS if child.second_wave} == {
        "RoleBinding",
        "Deployment",
    }

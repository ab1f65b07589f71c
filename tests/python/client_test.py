"""Drives a berth server with the official Python client (kubernetes==35.0.0), as a user's script would.

Usage: client_test.py KUBECONFIG. Runs each check in order, printing `ok <name>` or the failure; exits 1 if any
check failed. It asserts what the client returns (models, ApiException status codes), so a server that answers
in a shape the client cannot deserialize fails here even if kubectl is happy.
"""

import json
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

import checks

NS = "pytest-ns"


def deployment(name, image="nginx:1.25", replicas=2, labels=None):
    labels = labels or {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="main",
                            image=image,
                            ports=[client.V1ContainerPort(container_port=80)],
                            env=[client.V1EnvVar(name="A", value="1"), client.V1EnvVar(name="B", value="2")],
                        )
                    ]
                ),
            ),
        ),
    )


def expect_api_error(status, fn, *args, **kwargs):
    """Calls fn and returns the ApiException, asserting its HTTP status and that the body is a Status object."""
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == status, f"expected HTTP {status}, got {e.status}: {e.body}"
        body = json.loads(e.body)
        assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", f"not a Status: {e.body}"
        assert body.get("code") == status, f"Status.code {body.get('code')} != {status}"
        return body
    raise AssertionError(f"expected ApiException {status}, call succeeded")


def check_namespace_and_empty_lists(core, apps):
    ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    assert ns.metadata.name == NS and ns.metadata.uid, ns.metadata
    assert core.read_namespace(NS).status.phase == "Active"
    pods = core.list_namespaced_pod(NS)
    assert pods.items == [], pods.items
    assert pods.metadata.resource_version, "lists carry a resourceVersion"
    assert apps.list_namespaced_deployment(NS).items == []


def check_configmaps_and_selectors(core, apps):
    for name, tier in [("cm-a", "front"), ("cm-b", "front"), ("cm-c", "back")]:
        created = core.create_namespaced_config_map(
            NS,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"tier": tier}), data={"k": name}),
        )
        assert created.data == {"k": name}
    names = lambda **kw: sorted(i.metadata.name for i in core.list_namespaced_config_map(NS, **kw).items)
    assert names(label_selector="tier=front") == ["cm-a", "cm-b"], names(label_selector="tier=front")
    assert names(label_selector="tier in (back)") == ["cm-c"]
    assert names(label_selector="tier!=front,tier") == ["cm-c"]
    assert names(field_selector="metadata.name=cm-b") == ["cm-b"]
    assert names(field_selector="metadata.name!=cm-b", label_selector="tier=front") == ["cm-a"]
    assert names(field_selector=f"metadata.namespace={NS}", label_selector="tier") == ["cm-a", "cm-b", "cm-c"]
    everywhere = [i.metadata.name for i in core.list_config_map_for_all_namespaces(label_selector="tier=back").items]
    assert everywhere == ["cm-c"], everywhere


def check_deployment_and_service(core, apps):
    d = apps.create_namespaced_deployment(NS, deployment("web"))
    assert d.spec.template.spec.containers[0].image == "nginx:1.25"
    assert d.metadata.resource_version and d.metadata.creation_timestamp
    read = apps.read_namespaced_deployment("web", NS)
    assert read.spec.replicas == 2
    assert read.spec.template.spec.containers[0].ports[0].container_port == 80
    svc = core.create_namespaced_service(
        NS,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=80)]),
        ),
    )
    assert svc.spec.ports[0].port == 80
    assert svc.spec.type == "ClusterIP", svc.spec.type
    deps = apps.list_namespaced_deployment(NS, label_selector="app=web").items
    assert [x.metadata.name for x in deps] == ["web"]


def check_patches(core, apps):
    # A dict is sent as a strategic merge patch: containers merge by name, so env and ports survive.
    patched = apps.patch_namespaced_deployment(
        "web", NS, {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}}
    )
    c = patched.spec.template.spec.containers
    assert len(c) == 1 and c[0].image == "nginx:1.27" and [e.name for e in c[0].env] == ["A", "B"], c
    # A list is sent as a JSON patch.
    patched = apps.patch_namespaced_deployment(
        "web", NS, [{"op": "replace", "path": "/spec/replicas", "value": 5},
                    {"op": "remove", "path": "/spec/template/spec/containers/0/env/0"}]
    )
    assert patched.spec.replicas == 5
    assert [e.name for e in patched.spec.template.spec.containers[0].env] == ["B"]
    # $patch: delete removes one list element by its merge key.
    patched = apps.patch_namespaced_deployment(
        "web", NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "B", "$patch": "delete"}]}]}}}},
    )
    assert not patched.spec.template.spec.containers[0].env, patched.spec.template.spec.containers[0].env
    labelled = core.patch_namespaced_config_map("cm-a", NS, {"metadata": {"labels": {"extra": "yes"}}})
    assert labelled.metadata.labels == {"tier": "front", "extra": "yes"}


def check_watch_order(core, apps):
    start_rv = core.list_namespaced_config_map(NS).metadata.resource_version
    events = []

    def watcher():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, NS, resource_version=start_rv,
                           field_selector="metadata.name=watched", timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.5)
    created = core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"v": "1"})
    )
    updated = core.patch_namespaced_config_map("watched", NS, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("watched", NS)
    t.join(15)
    assert not t.is_alive(), f"watch did not end; events so far: {events}"
    assert [(e[0], e[1]) for e in events] == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")], events
    assert events[0][2] == created.metadata.resource_version, (events, created.metadata.resource_version)
    assert events[1][2] == updated.metadata.resource_version
    rvs = [int(e[2]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3, f"resourceVersions must increase: {rvs}"


def check_errors(core, apps):
    body = expect_api_error(404, core.read_namespaced_config_map, "missing", NS)
    assert body["reason"] == "NotFound" and body["message"] == 'configmaps "missing" not found', body
    body = expect_api_error(409, apps.create_namespaced_deployment, NS, deployment("web"))
    assert body["reason"] == "AlreadyExists", body
    body = expect_api_error(
        422, core.create_namespaced_config_map, NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name"))
    )
    assert body["reason"] == "Invalid" and "RFC 1123" in body["message"], body
    body = expect_api_error(404, core.create_namespaced_config_map, "nope",
                            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert body["message"] == 'namespaces "nope" not found', body
    stale = core.read_namespaced_config_map("cm-b", NS)
    core.patch_namespaced_config_map("cm-b", NS, {"data": {"k": "newer"}})
    stale.data = {"k": "stale"}
    body = expect_api_error(409, core.replace_namespaced_config_map, "cm-b", NS, stale)
    assert body["reason"] == "Conflict", body
    assert core.read_namespaced_config_map("cm-b", NS).data == {"k": "newer"}
    body = expect_api_error(400, core.list_namespaced_config_map, NS, label_selector="tier in in")
    assert body["reason"] == "BadRequest", body


def check_delete(core, apps):
    status = apps.delete_namespaced_deployment("web", NS)
    assert status is not None
    expect_api_error(404, apps.read_namespaced_deployment, "web", NS)
    core.delete_namespaced_service("web", NS)
    assert core.list_namespaced_service(NS).items == []
    core.delete_namespaced_config_map("cm-c", NS)
    left = sorted(i.metadata.name for i in core.list_namespaced_config_map(NS, label_selector="tier").items)
    assert left == ["cm-a", "cm-b"], left


CHECKS = [
    check_namespace_and_empty_lists,
    check_configmaps_and_selectors,
    check_deployment_and_service,
    check_patches,
    check_watch_order,
    check_errors,
    check_delete,
]


def main():
    config.load_kube_config(config_file=sys.argv[1])
    return checks.run(CHECKS, client.CoreV1Api(), client.AppsV1Api())


if __name__ == "__main__":
    sys.exit(main())

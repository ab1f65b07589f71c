"""Attaches to a running container with the official Python client (kubernetes==35.0.0), as a user's script would.

Usage: attach_test.py KUBECONFIG NAMESPACE POD. The pod's only container must run `cat` with `stdin: true` (the
Rust test `tests/logs_exec.rs` creates it). Attach goes through `kubernetes.stream.stream` on
`connect_get_namespaced_pod_attach`, which speaks the `v4.channel.k8s.io` WebSocket protocol. Prints `ok <name>` or
the failure for each check, then an `N passed, N failed` line; exits 1 if any check failed.
"""

import sys
import time

from kubernetes import client, config
from kubernetes.stream import stream

import checks

# Generous: the machine running the tests may be loaded.
TIMEOUT = 60


def attach(core, ns, pod):
    return stream(
        core.connect_get_namespaced_pod_attach,
        pod,
        ns,
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )


def read_until(resp, wanted):
    seen = ""
    deadline = time.monotonic() + TIMEOUT
    while wanted not in seen and resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        if resp.peek_stdout():
            seen += resp.read_stdout(timeout=0)
    return seen


def check_attach_echoes_stdin_through_the_containers_cat(core, ns, pod):
    resp = attach(core, ns, pod)
    try:
        resp.write_stdin("typed into the pod\n")
        seen = read_until(resp, "typed into the pod\n")
        assert seen == "typed into the pod\n", f"cat echoed {seen!r}"
    finally:
        # Closing the connection detaches; the container keeps running.
        resp.close()


def check_a_second_attach_finds_the_container_still_listening(core, ns, pod):
    resp = attach(core, ns, pod)
    try:
        resp.write_stdin("once more\n")
        seen = read_until(resp, "once more\n")
        assert seen == "once more\n", f"cat echoed {seen!r}"
    finally:
        resp.close()
    status = core.read_namespaced_pod(pod, ns).status.container_statuses[0]
    assert status.state.running is not None and status.restart_count == 0, f"container after detaching: {status}"


CHECKS = [
    check_attach_echoes_stdin_through_the_containers_cat,
    check_a_second_attach_finds_the_container_still_listening,
]


def main():
    kubeconfig, ns, pod = sys.argv[1:4]
    config.load_kube_config(config_file=kubeconfig)
    return checks.run(CHECKS, client.CoreV1Api(), ns, pod)


if __name__ == "__main__":
    sys.exit(main())

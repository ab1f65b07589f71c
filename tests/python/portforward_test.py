"""Forwards a pod's port with the official Python client (kubernetes==35.0.0), as a user's script would.

Usage: portforward_test.py KUBECONFIG NAMESPACE POD. The pod must run the workload's `serve` (HTTP on 8080, `GET /`
answers `Hello from <pod>`); the Rust test `tests/logs_exec.rs` creates it. Port-forward goes through
`kubernetes.stream.portforward` on `connect_get_namespaced_pod_portforward`, which speaks the `v4.channel.k8s.io`
WebSocket protocol with one data and one error channel per port. Prints `ok <name>` or the failure for each check,
then an `N passed, N failed` line; exits 1 if any check failed.
"""

import sys

from kubernetes import client, config
from kubernetes.stream import portforward

import checks

# Generous: the machine running the tests may be loaded.
TIMEOUT = 60


def forward(core, ns, pod, ports):
    return portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=",".join(map(str, ports)))


def http_get(sock):
    sock.settimeout(TIMEOUT)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return reply.decode()
        reply += chunk


def check_a_get_through_the_forwarded_port_reaches_the_pod(core, ns, pod):
    pf = forward(core, ns, pod, [8080])
    try:
        reply = http_get(pf.socket(8080))
        assert reply.startswith("HTTP/1.1 200"), f"reply {reply!r}"
        assert f"Hello from {pod}" in reply, f"reply {reply!r}"
        assert pf.error(8080) is None, f"error channel said {pf.error(8080)!r}"
    finally:
        pf.close()


def check_a_closed_port_is_reported_on_its_error_channel(core, ns, pod):
    pf = forward(core, ns, pod, [9])
    try:
        sock = pf.socket(9)
        sock.settimeout(TIMEOUT)
        # The client closes the port's socket when the error arrives; reading then ends.
        assert sock.recv(1024) == b"", "nothing listens on port 9"
        error = pf.error(9)
        assert error and "error forwarding port 9 to pod" in error, f"error channel said {error!r}"
    finally:
        pf.close()


CHECKS = [
    check_a_get_through_the_forwarded_port_reaches_the_pod,
    check_a_closed_port_is_reported_on_its_error_channel,
]


def main():
    kubeconfig, ns, pod = sys.argv[1:4]
    config.load_kube_config(config_file=kubeconfig)
    return checks.run(CHECKS, client.CoreV1Api(), ns, pod)


if __name__ == "__main__":
    sys.exit(main())

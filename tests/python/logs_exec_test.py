"""Reads a pod's log and execs into it with the official Python client (kubernetes==35.0.0), as a user's script would.

Usage: logs_exec_test.py KUBECONFIG NAMESPACE POD. The pod must be running `serve --log-every 200` in its only
container (the Rust test `tests/logs_exec.rs` creates it). Runs each check in order, printing `ok <name>` or the
failure; exits 1 if any check failed.

Exec goes through `kubernetes.stream.stream`, which speaks the `v4.channel.k8s.io` WebSocket protocol (kubectl
speaks v5); logs through `read_namespaced_pod_log`, plain and followed.
"""

import json
import re
import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

import checks

# Generous: the machine running the tests may be loaded.
TIMEOUT = 60


def ticks(text):
    return [int(m) for m in re.findall(r"^tick (\d+)$", text, re.MULTILINE)]


def exec_stream(core, ns, pod, command, **kwargs):
    return stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        ns,
        command=command,
        stderr=True,
        stdin=kwargs.pop("stdin", False),
        stdout=True,
        tty=False,
        **kwargs,
    )


def check_exec_returns_the_output(core, ns, pod):
    out = exec_stream(core, ns, pod, ["echo", "hello", "from", "python"])
    assert out == "hello from python\n", f"exec output: {out!r}"


def check_exec_reports_the_exit_code(core, ns, pod):
    resp = exec_stream(core, ns, pod, ["sh", "-c", "echo out; echo err > /dev/stderr; exit 7"], _preload_content=False)
    resp.run_forever(timeout=TIMEOUT)
    assert not resp.is_open(), "the exec stream is still open after the command ended"
    stdout, stderr = resp.read_stdout(), resp.read_stderr()
    assert resp.returncode == 7, f"returncode {resp.returncode!r}, stdout {stdout!r}, stderr {stderr!r}"
    assert stdout == "out\n", f"stdout {stdout!r}"

    resp = exec_stream(core, ns, pod, ["true"], _preload_content=False)
    resp.run_forever(timeout=TIMEOUT)
    assert resp.returncode == 0, f"returncode of `true`: {resp.returncode!r}"


def check_exec_feeds_stdin(core, ns, pod):
    resp = exec_stream(core, ns, pod, ["cat"], stdin=True, _preload_content=False)
    try:
        resp.write_stdin("typed into cat\n")
        seen = ""
        deadline = time.monotonic() + TIMEOUT
        while "typed into cat\n" not in seen and resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
            seen += resp.read_stdout(timeout=0) if resp.peek_stdout() else ""
        assert seen == "typed into cat\n", f"cat echoed {seen!r}"
    finally:
        # v4 cannot say "stdin ended"; closing the connection is how this client ends a session.
        resp.close()


def check_log_tail_lines(core, ns, pod):
    log = core.read_namespaced_pod_log(pod, ns, tail_lines=3)
    lines = log.splitlines()
    assert len(lines) == 3, f"tail_lines=3 gave {len(lines)} lines: {log!r}"
    nums = ticks(log)
    assert len(nums) == 3 and nums == list(range(nums[0], nums[0] + 3)), f"not three consecutive ticks: {log!r}"

    whole = core.read_namespaced_pod_log(pod, ns)
    assert whole.startswith(f"serving on :8080 as {pod}\n"), f"whole log starts {whole[:80]!r}"
    assert max(ticks(whole)) >= nums[-1], "the whole log is older than its tail"


def check_log_follow_streams_new_lines(core, ns, pod):
    start = max(ticks(core.read_namespaced_pod_log(pod, ns)))
    resp = core.read_namespaced_pod_log(
        pod, ns, follow=True, tail_lines=1, _preload_content=False, _request_timeout=TIMEOUT
    )
    buf = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        for chunk in resp.stream(1024, decode_content=False):
            buf += chunk
            if max(ticks(buf.decode()) or [0]) >= start + 5 or time.monotonic() > deadline:
                break
    finally:
        resp.close()
        resp.release_conn()
    nums = ticks(buf.decode())
    assert nums, f"follow delivered no ticks: {buf!r}"
    assert nums[0] >= start, f"tail_lines=1 started at tick {nums[0]}, but tick {start} was already written"
    assert nums[-1] >= start + 5, f"follow stopped at tick {nums[-1]} (started after {start}): {buf!r}"
    assert nums == list(range(nums[0], nums[-1] + 1)), f"follow lost or reordered lines: {nums}"


def check_log_errors(core, ns, pod):
    try:
        core.read_namespaced_pod_log(pod, ns, previous=True)
    except ApiException as e:
        assert e.status == 400, f"expected 400, got {e.status}: {e.body}"
        expected = f'previous terminated container "main" in pod "{pod}" not found'
        message = json.loads(e.body).get("message")
        assert message == expected, f"message {message!r}, expected {expected!r}"
    else:
        raise AssertionError("previous=True succeeded for a container that never restarted")
    try:
        core.read_namespaced_pod_log("no-such-pod", ns)
    except ApiException as e:
        assert e.status == 404, f"expected 404, got {e.status}: {e.body}"
    else:
        raise AssertionError("logs of a missing pod succeeded")


CHECKS = [
    check_exec_returns_the_output,
    check_exec_reports_the_exit_code,
    check_exec_feeds_stdin,
    check_log_tail_lines,
    check_log_follow_streams_new_lines,
    check_log_errors,
]


def main():
    kubeconfig, ns, pod = sys.argv[1:4]
    config.load_kube_config(config_file=kubeconfig)
    return checks.run(CHECKS, client.CoreV1Api(), ns, pod)


if __name__ == "__main__":
    sys.exit(main())

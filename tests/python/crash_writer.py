"""Concurrent writers for the crash test: several threads hammer a berth server with the Python client and log
every write the server acknowledged (2xx), one flushed line per write, until the server goes away.

Usage: crash_writer.py KUBECONFIG LOG THREADS FIRST_VALUE
Each thread owns the configmaps `w{thread}-k{0..3}` and writes strictly increasing integer values (starting at
FIRST_VALUE) into `data.v`, so a later value always means a later write. It also creates and deletes throwaway
configmaps `w{thread}-gone-{n}`. Log lines:
    SET <name> <value> <resourceVersion>     the server acknowledged data.v=value at that resourceVersion
    DEL <name> <resourceVersion>             the server acknowledged the delete (rv of the deleted object)
A thread stops at its first failed request (the server was killed) and the script exits 0. It never retries a
failed write, so the log holds only acknowledged writes.
"""

import sys
import threading

from kubernetes import client, config
from kubernetes.client.rest import ApiException

NS = "default"
KEYS = 4


def writer(kubeconfig, log, lock, thread, first_value):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    api_client.configuration.retries = False  # A retried request could be applied twice without our knowing.
    core = client.CoreV1Api(api_client)
    value = first_value

    def record(line):
        with lock:
            log.write(line + "\n")
            log.flush()

    try:
        while True:
            for k in range(KEYS):
                name = f"w{thread}-k{k}"
                value += 1
                body = {"metadata": {"name": name}, "data": {"v": str(value)}}
                try:
                    obj = core.patch_namespaced_config_map(name, NS, body)
                except ApiException as e:
                    if e.status != 404:
                        raise
                    obj = core.create_namespaced_config_map(NS, body)
                record(f"SET {name} {value} {obj.metadata.resource_version}")
            gone = f"w{thread}-gone-{value}"
            core.create_namespaced_config_map(NS, {"metadata": {"name": gone}, "data": {"v": "x"}})
            status = core.delete_namespaced_config_map(gone, NS)
            rv = getattr(getattr(status, "metadata", None), "resource_version", None) or "-"
            record(f"DEL {gone} {rv}")
    except Exception as e:  # The server was killed: stop writing; everything acknowledged is already logged.
        print(f"writer {thread} stopped: {type(e).__name__}", file=sys.stderr, flush=True)


def main():
    kubeconfig, log_path, threads, first_value = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lock = threading.Lock()
    with open(log_path, "a") as log:
        workers = [
            threading.Thread(target=writer, args=(kubeconfig, log, lock, t, first_value)) for t in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())

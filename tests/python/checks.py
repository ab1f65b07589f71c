"""Runs a test script's checks and reports each one, as every script here does.

Each check is a function that raises on failure. `run` prints `ok <name>` or `FAIL <name>` with the traceback for
every check (not just up to the first failure), then an `N passed, N failed` line, and returns the exit status.
"""

import traceback


def run(checks, *args):
    failed = 0
    for check in checks:
        try:
            check(*args)
            print(f"ok {check.__name__}", flush=True)
        except Exception:  # Report every check, not just the first failure.
            failed += 1
            print(f"FAIL {check.__name__}\n{traceback.format_exc()}", flush=True)
    print(f"{len(checks) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0

#!/usr/bin/env python3
"""Create the Python virtualenv the end-to-end tests use to drive berth with the official `kubernetes` client.

Usage: python-env.py [CACHE_DIR]  (default: $BERTH_TEST_CACHE, else <repo>/.cache). Prints the venv's python path.
The venv lives at CACHE_DIR/venv and holds exactly the pinned requirements below. Idempotent: a marker file written
last records what was installed; if it matches, nothing is done. An flock on CACHE_DIR/venv.lock serialises
concurrent runs (several test binaries may ask at once), so only one of them builds the venv.

Standard library only. It installs nothing outside the venv.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REQUIREMENTS = ["kubernetes==35.0.0"]
REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BERTH_TEST_CACHE") or REPO / ".cache")
    cache.mkdir(parents=True, exist_ok=True)
    env_dir = cache / "venv"
    python = env_dir / "bin" / "python"
    marker = env_dir / ".berth-requirements"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    with open(cache / "venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and marker.is_file() and marker.read_text() == wanted:
            print(python)
            return 0
        # A venv without the marker is a half-built one from an interrupted run: start again from nothing.
        shutil.rmtree(env_dir, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *REQUIREMENTS]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise SystemExit(f"python-env: `{' '.join(cmd)}` failed:\n{result.stdout}")
        marker.write_text(wanted)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())

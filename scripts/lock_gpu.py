"""Write requirements-gpu.lock: exact versions of expertlab[test,vllm] for a GPU machine, by pip's resolver.

vLLM pins its own torch, transformers range and compressed-tensors, so the GPU environment has a lock of
its own. It is resolved from PyPI alone, for this interpreter's platform (run it with Python 3.11 on Linux
x86_64, as the GPU machines are), with requirements.lock as constraints: every package keeps the CPU
lock's version unless vLLM's requirements exclude it; those constraints are dropped one by one as the
resolver names them, and printed. pip's fast-deps reads each wheel's metadata by range requests, so
nothing but metadata is downloaded. Never run by CI or `make test`.

    python scripts/lock_gpu.py            # needs pip >= 25 (python -m pip install -U pip)
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_LOCK, GPU_LOCK = ROOT / "requirements.lock", ROOT / "requirements-gpu.lock"
INDEX = "https://pypi.org/simple"
REFUSED = re.compile(r"The user requested \(constraint\) ([A-Za-z0-9_.-]+)==")


def canonical(requirement: str) -> str:
    """A pin's package name as PyPI compares names (case, '-', '_' and '.' alike)."""
    return re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower()


def resolve(constraints: list[str], report: Path) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(constraints) + "\n")
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--use-feature=fast-deps",
        "--index-url", INDEX, "--report", str(report), "-c", fh.name, f"{ROOT}[test,vllm]",
    ]
    print("$", " ".join(command), flush=True)
    # this machine's pip configuration (local wheel folders, extra indexes, constraints) is left out: PyPI only
    env = {key: value for key, value in os.environ.items()
           if key not in {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT"}}
    env["PIP_CONFIG_FILE"] = os.devnull
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env)
    finally:
        os.unlink(fh.name)


def main() -> int:
    if (platform.system(), platform.machine(), sys.version_info[:2]) != ("Linux", "x86_64", (3, 11)):
        print(f"run this with Python 3.11 on Linux x86_64 (this is Python {platform.python_version()} on "
              f"{platform.system()} {platform.machine()}): markers are evaluated for this interpreter", file=sys.stderr)
        return 2
    cpu = [line for line in CPU_LOCK.read_text().splitlines() if line and not line.startswith("#")]
    constraints = [line for line in cpu if not line.startswith("torch==")]  # the CPU wheel is not the GPU's torch
    dropped = ["torch"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        while True:
            result = resolve(constraints, report)
            if result.returncode == 0:
                break
            refused = sorted(set(REFUSED.findall(result.stdout + result.stderr)))
            if not refused:
                print(result.stdout[-3000:] + result.stderr[-3000:], file=sys.stderr)
                return 1
            print(f"vLLM's requirements exclude requirements.lock's {', '.join(refused)}: resolving without them")
            dropped += refused
            constraints = [line for line in constraints if canonical(line) not in {canonical(n) for n in refused}]
        installed = json.loads(report.read_text())["install"]
    pins = sorted((f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installed
                   if item["metadata"]["name"] != "expertlab"), key=str.lower)
    header = [
        "# expertlab[test,vllm] on a GPU machine (Linux x86_64, Python 3.11): `make setup-gpu`.",
        "# Written by scripts/lock_gpu.py (pip's resolver over PyPI, requirements.lock as constraints);",
        f"# versions other than requirements.lock's: {', '.join(sorted(dropped, key=str.lower))} (vLLM's requirements).",
    ]
    GPU_LOCK.write_text("\n".join(header + pins) + "\n")
    names, other = {canonical(line) for line in cpu}, {canonical(name) for name in dropped}
    print(f"{GPU_LOCK.name}: {len(pins)} packages, {sum(canonical(p) not in names for p in pins)} of them not in "
          f"{CPU_LOCK.name}; other versions than {CPU_LOCK.name}'s: " + ", ".join(p for p in pins if canonical(p) in other))
    return 0


if __name__ == "__main__":
    sys.exit(main())

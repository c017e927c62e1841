#!/usr/bin/env python3
"""Test the aarch64 wheel on an aarch64 CPython, under qemu-user (``make test-aarch64``).

    python scripts/test_aarch64.py [--wheel dist/crewcore-...-manylinux_2_28_aarch64.whl] [-- PYTEST ARGS]

What it does, and what it needs (root: it installs Debian packages):

1. Debian's ``qemu-user-static`` and ``debootstrap`` (apt-get install, said
   before it is done, when missing).
2. An aarch64 Debian bookworm root in ``$CREWCORE_ARM64_ROOT`` (default
   /var/tmp/crewcore-arm64-bookworm), made once: ``debootstrap --foreign
   --arch=arm64`` downloads the packages and the script unpacks them
   (``dpkg-deb -x``; no maintainer script runs, none is needed for Python).
   Its CPython 3.11 is run as ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11``.
   binfmt_misc is not used (it would change the host kernel for everyone),
   so an aarch64 process cannot start another aarch64 process: the one
   conformance test that runs a child interpreter is deselected (named below).
3. The test dependencies for aarch64 (CrewAI, LanceDB, numpy, pytest, msgpack at
   the versions of requirements-dev.txt/constraints.txt), made once: the host's
   pip downloads their manylinux aarch64 wheels (``--platform ... --target``)
   into ``$CREWCORE_ARM64_DEPS`` (default /var/tmp/crewcore-arm64-deps-<hash of the pins>).
4. A clean aarch64 venv (``-m venv --without-pip``, in a temporary directory)
   that sees those dependencies through one .pth line; the wheel is installed
   into it by Debian's pip (run from its wheel file, under qemu).
5. Checks in that venv: crewcore is the wheel's, the native engine loads
   (backend ``native``, the portable ``generic`` kernel), the version is
   pyproject's; then pytest runs tests/test_conformance.py (native, python and
   LanceDB engines) under emulation.

Slow: the first run downloads ~1 GB of aarch64 wheels and an arm64 base
system; every run imports CrewAI under emulation.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

REPO = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("CREWCORE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
DESELECT = [
    # starts a child interpreter (run_py): without binfmt_misc an aarch64
    # process cannot exec another aarch64 binary
    "tests/test_conformance.py::test_engine_guard_one_file_one_sqlite_library",
]


def say(msg: str) -> None:
    print(f"test_aarch64: {msg}", flush=True)


def version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def ensure_tools() -> str:
    missing = [pkg for exe, pkg in (("qemu-aarch64-static", "qemu-user-static"), ("debootstrap", "debootstrap"))
               if not shutil.which(exe)]
    if missing:
        if os.geteuid() != 0:
            sys.exit(f"test_aarch64: needs Debian packages {missing} (run as root, or apt-get install them)")
        say(f"installing Debian packages {missing} with apt-get (as root)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("qemu-aarch64-static") or sys.exit("test_aarch64: qemu-aarch64-static not found")


def ensure_root() -> Path:
    root = Path(os.environ.get("CREWCORE_ARM64_ROOT", "/var/tmp/crewcore-arm64-bookworm"))
    if (root / "usr" / "bin" / "python3.11").exists():
        return root
    say(f"making an arm64 Debian {SUITE} root in {root} (debootstrap --foreign, then dpkg-deb -x)")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
                    "--include=python3,python3-venv,python3-pip-whl,python3-setuptools-whl",
                    SUITE, str(tmp), MIRROR], check=True, stdout=subprocess.DEVNULL)
    for deb in sorted((tmp / "var" / "cache" / "apt" / "archives").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    if not (tmp / "usr" / "bin" / "python3.11").exists():
        sys.exit(f"test_aarch64: no python3.11 in {tmp} after unpacking")
    tmp.rename(root)
    return root


def pins() -> list[str]:
    """The requirements-dev.txt pins the conformance suite needs."""
    want = {"crewai", "lancedb", "msgpack", "numpy", "pytest"}
    out = []
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==", line)
        if m and m.group(1).lower() in want:
            out.append(line.strip())
    return out


def ensure_deps() -> Path:
    reqs = pins()
    # Keyed by the direct pins (the rest follows constraints.txt at download time).
    key = hashlib.sha1("\n".join(reqs).encode()).hexdigest()[:12]
    deps = Path(os.environ.get("CREWCORE_ARM64_DEPS", f"/var/tmp/crewcore-arm64-deps-{key}"))
    if (deps / ".complete").exists():
        return deps
    say(f"downloading the aarch64 wheels of {reqs} into {deps} (host pip, --platform)")
    shutil.rmtree(deps, ignore_errors=True)
    plats = ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(deps),
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:",
           "-c", str(REPO / "constraints.txt")]
    for p in plats:
        cmd += ["--platform", p]
    subprocess.run([*cmd, *reqs], check=True)
    (deps / ".complete").write_text("\n".join(reqs) + "\n")
    return deps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", default=str(REPO / "dist" / f"crewcore-{version()}-py3-none-manylinux_2_28_aarch64.whl"))
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    wheel = Path(args.wheel).resolve()
    if not wheel.exists():
        sys.exit(f"test_aarch64: no wheel {wheel} (make wheels)")
    qemu = ensure_tools()
    root = ensure_root()
    deps = ensure_deps()
    q = [qemu, "-L", str(root)]
    with tempfile.TemporaryDirectory(prefix="crewcore-arm64-venv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([*q, str(root / "usr/bin/python3.11"), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = venv / "lib" / "python3.11" / "site-packages"
        (site / "zz_crewcore_arm64_deps.pth").write_text(f"{deps}\n")
        pip = next((root / "usr/share/python-wheels").glob("pip-*.whl"))
        py = [*q, str(venv / "bin" / "python")]
        say(f"installing {wheel.name} into a clean aarch64 venv ({venv})")
        subprocess.run([*py, f"{pip}/pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
                        "-q", str(wheel)], check=True)
        check = (
            "import crewcore, platform, sys\n"
            "from crewcore import _bridge\n"
            "ver, kernel = _bridge.version()\n"
            f"assert crewcore.__file__.startswith({str(site)!r}), crewcore.__file__\n"
            "assert platform.machine() == 'aarch64', platform.machine()\n"
            "assert crewcore.backend() == 'native', crewcore.backend()\n"
            f"assert crewcore.__version__ == ver == {version()!r}, (crewcore.__version__, ver)\n"
            "print(f'aarch64 venv: crewcore {ver} from {crewcore.__file__}, backend native, kernel {kernel}, '\n"
            "      f'python {platform.python_version()}, {platform.libc_ver()}')\n"
        )
        subprocess.run([*py, "-c", check], check=True, cwd=tmp)
        cmd = [*py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_conformance.py"]
        for d in DESELECT:
            cmd += ["--deselect", d]
        say(f"running the memory conformance suite under qemu (deselected: {', '.join(DESELECT)})")
        env = dict(os.environ, CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true",
                   CREWAI_TRACING_ENABLED="false")
        for k in ("CREWCORE_LIB", "CREWCORE_FORCE_PYTHON", "PYTHONPATH"):
            env.pop(k, None)
        return subprocess.run([*cmd, *args.pytest_args], cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

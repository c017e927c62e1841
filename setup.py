"""Build hook: building crewcore compiles the Go engine (libcrewcore.so) and the
`crewcore` command into the package (``crewcore/_lib/``).

Building from source (``pip install .``, or from the sdist) needs Go at least
as new as go.mod's ``go`` line (1.26), with cgo and a C compiler: ``go`` on
PATH, or the one named by ``$GO``. Without it the build stops with one line
that says so and points to the prebuilt wheels.

The wheel is platform specific but not Python-version specific: the engine is
loaded with ctypes, so the tag is ``py3-none-<platform>``. The platform is
``linux_<arch>`` for a build against the host's C library; scripts/build_wheels.py
(``make wheels``) builds against glibc 2.28 with ``zig cc`` as CC and sets
``CREWCORE_WHEEL_PLAT=manylinux_2_28_<arch>``, then checks the result with
auditwheel. A cross build only needs ``GOARCH`` (and a CC for that target) in
the environment; every target but amd64 uses the portable vector kernels.

The version is written once, in pyproject.toml; it is stamped into the Go
code (``-X .../internal/version.Version``) and read by ``crewcore.__version__``
from the installed metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

ROOT = Path(__file__).resolve().parent
MODULE = "github.com/crewcore/crewcore"
#: Build tags of every build: FTS5 in the bundled SQLite (the knowledge store's keyword search).
GO_TAGS = ["sqlite_fts5"]
#: Where the Go side reads the version from (set with -ldflags -X).
VERSION_VAR = f"{MODULE}/internal/version.Version"
#: GOARCH -> the machine name of wheel platform tags.
WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
WHEELS_HINT = "or install a prebuilt wheel (manylinux_2_28 x86_64/aarch64): pip install --only-binary=crewcore crewcore"

_built_goarch: str | None = None


def project_version() -> str:
    """The [project] version of pyproject.toml (the one place it is written)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    m = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    if not m:
        raise SetupError("crewcore: pyproject.toml has no [project] version")
    return m.group(1)


def required_go() -> tuple[int, int]:
    """The Go release go.mod asks for (its ``go 1.N`` line)."""
    m = re.search(r"^go\s+(\d+)\.(\d+)", (ROOT / "go.mod").read_text(), re.M)
    if not m:
        raise SetupError("crewcore: go.mod has no go line")
    return int(m.group(1)), int(m.group(2))


def find_go(env: dict[str, str]) -> str:
    """The go command to build with; SetupError (one line) when missing or too old."""
    need = required_go()
    need_s = f"{need[0]}.{need[1]}"
    named = env.get("GO")
    go = shutil.which(named) if named else shutil.which("go", path=env.get("PATH"))
    where = f"$GO ({named})" if named else "PATH"
    if not go:
        raise SetupError(
            f"crewcore: building from source needs Go >= {need_s} (with cgo), but no go command "
            f"was found on {where}; install Go >= {need_s} from https://go.dev/dl/ "
            f"and put it on PATH or set GO=/path/to/go, {WHEELS_HINT}")
    try:
        out = subprocess.run([go, "version"], env=env, capture_output=True, text=True,
                             timeout=60, cwd=ROOT).stdout
    except OSError as e:
        raise SetupError(f"crewcore: cannot run {go} ({e}); building from source needs Go >= {need_s}, "
                         f"{WHEELS_HINT}") from None
    m = re.search(r"\bgo(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < need:
        got = m.group(0) if m else (out.strip() or "no version")
        raise SetupError(
            f"crewcore: building from source needs Go >= {need_s}, but {go} is {got}; "
            f"install Go >= {need_s} from https://go.dev/dl/, {WHEELS_HINT}")
    return go


def build_go(out_dir: Path) -> None:
    """Build libcrewcore.so and the crewcore command into out_dir."""
    global _built_goarch
    env = dict(os.environ, CGO_ENABLED="1")
    # Check (and build with) the Go that was found, not one go.mod's
    # toolchain line would download, unless the user chose otherwise.
    env.setdefault("GOTOOLCHAIN", "local")
    go = find_go(env)
    goarch = subprocess.run([go, "env", "GOARCH"], env=env, capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout.strip()
    tags = list(GO_TAGS)
    if goarch == "amd64":
        env["GOEXPERIMENT"] = "simd"  # the AVX2/AVX-512 kernels (internal/vec)
    else:
        env.pop("GOEXPERIMENT", None)
        tags.append("purego")  # the portable kernels
    version = project_version()
    script = ROOT / "cabi" / "exports.map"
    ld = f"-s -w -X {VERSION_VAR}={version}"
    # --strip-all also drops the C debug info a non-GNU linker (zig's) keeps.
    common = [go, "build", "-trimpath", "-tags", ",".join(tags)]
    out_dir.mkdir(parents=True, exist_ok=True)
    # The CLI is a PIE: then its cgo packages (SQLite's amalgamation, most of
    # the build's time) have the same build cache key as the c-shared
    # library's and are compiled once, not twice.
    builds = [
        [*common, "-buildmode=c-shared",
         "-ldflags", f"{ld} -extldflags '-Wl,--version-script={script} -Wl,--strip-all'",
         "-o", str(out_dir / "libcrewcore.so"), "./cabi"],
        [*common, "-buildmode=pie", "-ldflags", f"{ld} -extldflags '-Wl,--strip-all'",
         "-o", str(out_dir / "crewcore"), "./cmd/crewcore"],
    ]
    for cmd in builds:
        subprocess.check_call(cmd, cwd=ROOT, env=env)
    (out_dir / "libcrewcore.h").unlink(missing_ok=True)
    _built_goarch = goarch


class BuildPyWithGo(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            target = ROOT / "python" / "crewcore" / "_lib"
        else:
            target = Path(self.build_lib) / "crewcore" / "_lib"
        build_go(target)


class BinaryDistribution(Distribution):
    """Native code inside: install to platlib (a wheel's root, not .data/purelib)."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """py3-none-<platform>: the package holds native code but no Python extension."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        plat = os.environ.get("CREWCORE_WHEEL_PLAT")
        if not plat:
            plat = super().get_tag()[2]
            arch = WHEEL_ARCH.get(_built_goarch or "")
            if arch and plat.startswith("linux_") and plat != f"linux_{arch}":
                plat = f"linux_{arch}"  # a cross build (GOARCH) on this host
        return "py3", "none", plat


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildPyWithGo, "bdist_wheel": PlatformWheel})

"""crewcore as a user gets it: the wheels, the sdist, the version, the command.

* The manylinux_2_28 wheels of ``make wheels`` (run here; a no-op when they
  are up to date): tags, contents, metadata, and the glibc 2.28 check.
* The x86_64 wheel installed into a fresh venv with no Go on PATH: the
  ``crewcore`` console command, ``python -m crewcore``, and a real CrewAI crew
  with memory against ``crewcore mockllm`` through the wheel's engine.
* The aarch64 wheel's command run under qemu-user (when Debian's
  qemu-user-static and libc6-arm64-cross are installed, as .ci/run does).
  The full aarch64 run (an aarch64 CPython, the memory conformance suite) is
  ``make test-aarch64``.
* The sdist: it carries every Go source the library and the command need; a
  wheel builds from it with Go; without Go (or with an old one) the build
  stops with one line that names the Go version and the wheels.
* One version everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

from conftest import child_env

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "dist"
with open(REPO / "pyproject.toml", "rb") as _f:
    VERSION = tomllib.load(_f)["project"]["version"]
ARCHES = ["x86_64", "aarch64"]
DEV_VENV = REPO / ".venv"

sys.path.insert(0, str(REPO / "scripts"))
import build_wheels  # noqa: E402


def wheel_path(arch: str) -> Path:
    return DIST / f"crewcore-{VERSION}-py3-none-manylinux_2_28_{arch}.whl"


def sdist_path() -> Path:
    return DIST / f"crewcore-{VERSION}.tar.gz"


def go_free_path() -> str:
    """PATH without any directory that holds a ``go`` command."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "go"))]
    return os.pathsep.join(keep)


def no_go_env(**extra: str) -> dict[str, str]:
    env = child_env()
    for k in ("GO", "GOROOT", "CREWCORE_LIB", "CREWCORE_FORCE_PYTHON", "PYTHONPATH"):
        env.pop(k, None)
    env["PATH"] = go_free_path()
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def dist() -> Path:
    """The artifacts of ``make wheels`` (built now unless up to date). ``-o``:
    never rebuild the dev venv and library this test session has loaded."""
    r = subprocess.run(["make", "-s", "--no-print-directory", "-o", ".venv/.stamp", "wheels"], cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"make wheels failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    for p in [sdist_path(), *map(wheel_path, ARCHES)]:
        assert p.exists(), f"make wheels did not produce {p.name}"
    return DIST


# --------------------------------------------------------------------------
# the wheels


@pytest.mark.parametrize("arch", ARCHES)
def test_wheel_contents_and_metadata(dist, arch):
    with zipfile.ZipFile(wheel_path(arch)) as zf:
        names = set(zf.namelist())
        info = f"crewcore-{VERSION}.dist-info"
        wheel_meta = zf.read(f"{info}/WHEEL").decode()
        meta = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        modes = {n: (zf.getinfo(n).external_attr >> 16) & 0o777 for n in names}
        license_text = zf.read(f"{info}/licenses/LICENSE").decode()
    assert "Root-Is-Purelib: false" in wheel_meta
    assert f"Tag: py3-none-manylinux_2_28_{arch}" in wheel_meta
    # The engine and the command, at the package root (platlib), the command executable.
    assert {"crewcore/_lib/libcrewcore.so", "crewcore/_lib/crewcore"} <= names
    assert modes["crewcore/_lib/crewcore"] & 0o111, oct(modes["crewcore/_lib/crewcore"])
    assert not any(n.endswith(".h") or ".data/" in n for n in names), sorted(names)
    # Every Python module of the source tree, so a new subpackage is picked up.
    src = REPO / "python" / "crewcore"
    want = {f"crewcore/{p.relative_to(src).as_posix()}" for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    assert want - names == set()
    assert {"crewcore/py.typed", "crewcore/__main__.py", "crewcore/_cli.py"} <= names
    assert re.search(r"^crewcore = crewcore\._cli:main$", entry_points, re.M), entry_points
    # PyPI metadata.
    assert f"\nVersion: {VERSION}\n" in meta
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta
    assert "MIT License" in license_text
    assert "Description-Content-Type: text/markdown" in meta
    assert "\n# crewcore\n" in meta  # the README is the description
    assert "Classifier: Operating System :: POSIX :: Linux" in meta
    assert "Classifier: Programming Language :: Go" in meta
    urls = re.findall(r"^Project-URL: (.*)$", meta, re.M)
    assert urls and all("github.com/crewcore/crewcore" in u for u in urls), urls
    assert re.search(r"^Requires-Dist: crewai<1\.16,>=1\.15$", meta, re.M), meta[:2000]
    assert re.search(r"^Requires-Dist: msgpack>=1\.0$", meta, re.M)
    assert "Requires-Python: >=3.10" in meta


@pytest.mark.parametrize("arch", ARCHES)
def test_wheel_needs_at_most_glibc_2_28(dist, arch):
    """auditwheel finds the wheel manylinux_2_28-consistent, and every ELF
    file (library and command) is for the arch and needs GLIBC <= 2.28."""
    lines = build_wheels.check_wheel(wheel_path(arch), arch)
    text = "\n".join(lines)
    assert f'platform tag: "manylinux_2_28_{arch}"' in text
    assert text.count("highest symbol version GLIBC_") == 2


def _qemu() -> tuple[str, Path] | None:
    exe = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    sysroot = Path("/usr/aarch64-linux-gnu")
    if exe and (sysroot / "lib" / "ld-linux-aarch64.so.1").exists():
        return exe, sysroot
    return None


def test_aarch64_command_runs_under_qemu(dist, tmp_path):
    q = _qemu()
    if q is None:
        pytest.skip("NOT RUN: needs Debian's qemu-user-static and libc6-arm64-cross "
                    "(apt-get install qemu-user-static libc6-arm64-cross; .ci/run installs them)")
    qemu, sysroot = q
    with zipfile.ZipFile(wheel_path("aarch64")) as zf:
        zf.extract("crewcore/_lib/crewcore", tmp_path)
    exe = tmp_path / "crewcore" / "_lib" / "crewcore"
    exe.chmod(0o755)
    r = subprocess.run([qemu, "-L", str(sysroot), str(exe), "--version"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"crewcore {re.escape(VERSION)} \(go\S+ linux/arm64\)\n", r.stdout), r.stdout
    # The command does real work there too: a store made and inspected under emulation.
    r = subprocess.run([qemu, "-L", str(sysroot), str(exe), "memory", "stats", "--path", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no store" in (r.stderr + r.stdout).lower(), (r.stdout, r.stderr)


# --------------------------------------------------------------------------
# the x86_64 wheel in a fresh venv, without Go

CREW_SCRIPT = r"""
import json, os, sys
from pathlib import Path
import crewcore
from crewcore import _bridge
venv = Path(sys.argv[1]).resolve()
facts = {
    "crewcore": crewcore.__file__,
    "library": str(_bridge.library_path()),
    "backend": crewcore.backend(),
    "version": crewcore.__version__,
    "engine_version": _bridge.version()[0],
}
maps = Path("/proc/self/maps").read_text()
facts["mapped"] = sorted({ln.split()[-1] for ln in maps.splitlines() if ln.endswith("libcrewcore.so")})
crewcore.install()
from crewai import LLM, Agent, Crew, Process, Task

def crew():
    llm = LLM(model="gpt-4o-mini")
    agent = Agent(role="Research Analyst", goal="Learn the Zephyr launch facts",
                  backstory="Remembers what the team learned.", llm=llm)
    task = Task(description="What is the Zephyr launch date? {question}",
                expected_output="The launch date.", agent=agent)
    return Crew(agents=[agent], tasks=[task], process=Process.sequential, memory=True,
                embedder={"provider": "openai", "config": {"model_name": "text-embedding-3-small"}})

c1 = crew()
c1.kickoff(inputs={"question": "The launch is on March 5 and Priya owns the checklist."})
mem = getattr(c1, "_memory", None)
if mem is not None and hasattr(mem, "drain_writes"):
    mem.drain_writes()
c2 = crew()
out2 = c2.kickoff(inputs={"question": "What did we learn last time?"})
storage = c2._memory._storage
facts["storage"] = type(storage).__module__ + "." + type(storage).__name__
facts["records"] = storage.count()
facts["recalled"] = "Recalled memories" in out2.raw or "march 5" in out2.raw.lower()
print(json.dumps(facts))
"""


def _fresh_venv(tmp_path: Path) -> Path:
    """A venv of the base interpreter, with the dev venv's site-packages
    appended (CrewAI and its dependencies, not re-downloaded) by a plain
    .pth line: its own .pth files (the editable crewcore) are not run, so
    the only crewcore is the wheel's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    dev_site = next((DEV_VENV / "lib").glob("python3*/site-packages"))
    (site / "zz_crewcore_test_deps.pth").write_text(f"{dev_site}\n")
    return venv


def test_x86_64_wheel_runs_a_crew_with_memory_without_go(dist, tmp_path):
    env = no_go_env()
    assert shutil.which("go", path=env["PATH"]) is None
    venv = _fresh_venv(tmp_path)
    py = venv / "bin" / "python"
    # pip of the dev venv installs into the fresh one (--python); no index:
    # the dependencies (crewai, msgpack) are found through the .pth above.
    r = subprocess.run([str(DEV_VENV / "bin" / "python"), "-m", "pip", "--python", str(py), "install",
                        "--no-index", "--no-cache-dir", "--disable-pip-version-check", str(wheel_path("x86_64"))],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully installed crewcore" in r.stdout, r.stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "crewcore" / "_lib" / "libcrewcore.so").exists()

    work = tmp_path / "work"  # not the repository: nothing of python/ is importable from here
    work.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    cmd = shutil.which("crewcore", path=env["PATH"])
    assert cmd == str(venv / "bin" / "crewcore"), cmd
    for argv in ([cmd, "--version"], [str(py), "-m", "crewcore", "--version"]):
        r = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"crewcore {VERSION} (go"), r.stdout
        assert "linux/amd64" in r.stdout

    server = subprocess.Popen([cmd, "mockllm", "--addr", "127.0.0.1:0", "--latency", "2ms"],
                              env=env, cwd=work, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("mockllm listening on "), line
        url = line.split("mockllm listening on ", 1)[1].strip()
        env.update(
            OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-mockllm", CREWAI_STORAGE_DIR=str(tmp_path / "storage"),
            CREWAI_DISABLE_TELEMETRY="true", CREWAI_DISABLE_TRACKING="true", OTEL_SDK_DISABLED="true",
            CREWAI_TRACING_ENABLED="false", CREWAI_DISABLE_VERSION_CHECK="true",
        )
        r = subprocess.run([str(py), "-c", CREW_SCRIPT, str(venv)], env=env, cwd=work,
                           capture_output=True, text=True, timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    facts = json.loads(r.stdout.strip().splitlines()[-1])
    lib = site / "crewcore" / "_lib" / "libcrewcore.so"
    assert Path(facts["crewcore"]).is_relative_to(site), facts
    assert facts["library"] == str(lib) and facts["mapped"] == [str(lib)], facts
    assert facts["backend"] == "native", facts
    assert facts["version"] == VERSION and facts["engine_version"] == VERSION, facts
    assert facts["storage"].startswith("crewcore."), facts
    assert facts["records"] > 0 and facts["recalled"], facts
    assert (tmp_path / "storage" / "crewcore" / "memory.db").exists()


# --------------------------------------------------------------------------
# the sdist


def _go_list(env_extra: dict[str, str]) -> set[str]:
    """Every file of this module that building the library and the command reads."""
    fmt = ("{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}"
           "{{range .GoFiles}}{{$d}}/{{.}}\n{{end}}{{range .CgoFiles}}{{$d}}/{{.}}\n{{end}}"
           "{{range .CFiles}}{{$d}}/{{.}}\n{{end}}{{range .HFiles}}{{$d}}/{{.}}\n{{end}}"
           "{{range .SFiles}}{{$d}}/{{.}}\n{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}\n{{end}}"
           "{{end}}{{end}}")
    env = dict(os.environ, CGO_ENABLED="1", **env_extra)
    r = subprocess.run(["go", "list", "-deps", "-tags", env.pop("TAGS"), "-f", fmt, "./cabi", "./cmd/crewcore"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {str(Path(p).relative_to(REPO)) for p in r.stdout.split()}


def test_sdist_carries_the_go_sources(dist):
    with tarfile.open(sdist_path()) as tf:
        top = f"crewcore-{VERSION}/"
        names = {m.name.removeprefix(top) for m in tf.getmembers() if m.isfile()}
    needed = _go_list({"GOEXPERIMENT": "simd", "GOARCH": "amd64", "TAGS": "sqlite_fts5"})
    needed |= _go_list({"GOEXPERIMENT": "", "GOARCH": "arm64", "TAGS": "sqlite_fts5,purego"})
    assert any(n.startswith("internal/vec/") for n in needed) and "cabi/main.go" in needed
    assert needed - names == set(), "missing from the sdist"
    assert {"go.mod", "go.sum", "cabi/exports.map", "setup.py", "pyproject.toml", "MANIFEST.in",
            "LICENSE", "CHANGELOG.md", "README.md"} <= names
    assert not [n for n in names if n.endswith("_test.go")]
    assert not [n for n in names if "/_lib/" in n or n.endswith(".so")], "a prebuilt engine in the sdist"
    src = REPO / "python" / "crewcore"
    py = {f"python/crewcore/{p.relative_to(src).as_posix()}" for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    assert py - names == set()


def _pip_wheel_from_sdist(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEV_VENV / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--disable-pip-version-check", "-w", str(out), str(sdist_path())],
        env=env, capture_output=True, text=True, timeout=1200, cwd=out)


def test_sdist_builds_a_wheel_with_go(dist, tmp_path):
    """A user's build from source: the host's Go and C compiler, any glibc."""
    env = child_env()
    env.pop("GOFLAGS", None)
    env.pop("GOEXPERIMENT", None)
    r = _pip_wheel_from_sdist(tmp_path, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheel = tmp_path / f"crewcore-{VERSION}-py3-none-linux_x86_64.whl"
    assert wheel.exists(), sorted(p.name for p in tmp_path.iterdir())
    with zipfile.ZipFile(wheel) as zf:
        zf.extract("crewcore/_lib/crewcore", tmp_path / "x")
        assert "crewcore/_lib/libcrewcore.so" in zf.namelist()
    exe = tmp_path / "x" / "crewcore" / "_lib" / "crewcore"
    exe.chmod(0o755)
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith(f"crewcore {VERSION} (go"), out
    # Built against this machine's glibc (2.36), it is no manylinux_2_28
    # wheel, and the check `make wheels` applies says so.
    shutil.copy(wheel, tmp_path / wheel_path("x86_64").name)
    with pytest.raises(SystemExit) as e:
        build_wheels.check_wheel(tmp_path / wheel_path("x86_64").name, "x86_64")
    assert re.search(r"needs GLIBC_2\.(29|3\d) > 2\.28", str(e.value)), e.value


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "crewcore: building from source needs Go >= 1.26" in ln]
    assert len(lines) == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert "pip install --only-binary=crewcore crewcore" in lines[0]
    return lines[0]


def test_sdist_without_go_fails_with_one_line(dist, tmp_path):
    env = no_go_env()
    r = _pip_wheel_from_sdist(tmp_path, env)
    assert r.returncode != 0
    line = _one_error_line(r.stdout + r.stderr)
    assert "no go command was found on PATH" in line, line
    assert "/usr/local/go" not in r.stdout + r.stderr

    env["GO"] = str(tmp_path / "nowhere" / "go")
    r = _pip_wheel_from_sdist(tmp_path, env)
    assert r.returncode != 0
    assert "no go command was found on $GO" in _one_error_line(r.stdout + r.stderr)


def test_sdist_with_an_old_go_fails_with_one_line(dist, tmp_path):
    """$GO names a go command that reports 1.25 (a stand-in script: no older
    Go toolchain is installed here)."""
    old = tmp_path / "go1.25" / "go"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'go version go1.25.3 linux/amd64'\n")
    old.chmod(0o755)
    env = no_go_env(GO=str(old))
    r = _pip_wheel_from_sdist(tmp_path, env)
    assert r.returncode != 0
    line = _one_error_line(r.stdout + r.stderr)
    assert f"but {old} is go1.25" in line, line


# --------------------------------------------------------------------------
# one version


def test_one_version_everywhere():
    import crewcore
    from crewcore import _bridge

    assert crewcore.__version__ == VERSION
    assert _bridge.version()[0] == VERSION
    exe = REPO / "python" / "crewcore" / "_lib" / "crewcore"
    for argv in ([str(exe), "--version"], [sys.executable, "-m", "crewcore", "--version"],
                 [sys.executable, "-m", "crewcore", "version"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=child_env())
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"crewcore {VERSION} ("), (argv, r.stdout)
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(VERSION)}\b", changelog, re.M), "CHANGELOG.md has no section for it"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")

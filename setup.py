"""Build hook: `pip install .` compiles the Go engine (libcrewcore.so) and the
`crewcore` command into the package. Needs Go >= 1.26 on PATH."""

import os
from pathlib import Path
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def build_go(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = dict(os.environ, GOEXPERIMENT="simd", CGO_ENABLED="1")
    script = ROOT / "cabi" / "exports.map"
    subprocess.check_call(
        [go, "build", "-trimpath", "-buildmode=c-shared",
         "-ldflags", f"-s -w -extldflags '-Wl,--version-script={script}'",
         "-o", str(out_dir / "libcrewcore.so"), "./cabi"],
        cwd=ROOT, env=env)
    (out_dir / "libcrewcore.h").unlink(missing_ok=True)
    subprocess.check_call(
        [go, "build", "-trimpath", "-o", str(out_dir / "crewcore"), "./cmd/crewcore"],
        cwd=ROOT, env=env)


class BuildPyWithGo(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            target = ROOT / "python" / "crewcore" / "_lib"
        else:
            target = Path(self.build_lib) / "crewcore" / "_lib"
        build_go(target)


setup(cmdclass={"build_py": BuildPyWithGo})

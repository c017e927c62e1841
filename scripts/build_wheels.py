#!/usr/bin/env python3
"""Build crewcore's sdist and its manylinux_2_28 wheels (``make wheels``).

    python scripts/build_wheels.py [--out dist] [--arch x86_64] [--arch aarch64] [--sdist-only]

1. The sdist (``python -m build --sdist``): Python package, Go module sources,
   texts; no prebuilt engine.
2. For each architecture, a wheel built *from that sdist* (so a file missing
   from the sdist fails here), in a temporary directory, with ``zig cc
   -target <arch>-linux-gnu.2.28`` as cgo's C compiler: the library and the
   command then link against glibc 2.28's symbol versions, whatever glibc
   this machine has. ``GOARCH`` selects the target; setup.py uses the SIMD
   kernels on amd64 and the portable ones elsewhere, and tags the wheel
   ``py3-none-manylinux_2_28_<arch>`` (``CREWCORE_WHEEL_PLAT``).
3. Every wheel is checked, and the build fails unless all hold:
   ``auditwheel show`` finds it consistent with manylinux_2_28 (or an older
   policy) for its architecture; every ELF file in it (the library *and* the
   command) is for that architecture, needs no glibc symbol version above 2.28
   and no shared library outside the manylinux set; the WHEEL file says
   ``Root-Is-Purelib: false`` with the expected tag.

zig comes from the ``ziglang`` wheel and auditwheel from PyPI, both pinned in
requirements-dev.txt (see docs/architecture.md, Dependencies).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile

REPO = Path(__file__).resolve().parent.parent
#: The manylinux policy the wheels claim: glibc 2.28 (manylinux_2_28).
GLIBC = (2, 28)
#: wheel arch -> (GOARCH, zig target, ELF e_machine, program interpreter)
ARCHES = {
    "x86_64": ("amd64", "x86_64-linux-gnu", "EM_X86_64", "/lib64/ld-linux-x86-64.so.2"),
    "aarch64": ("arm64", "aarch64-linux-gnu", "EM_AARCH64", "/lib/ld-linux-aarch64.so.1"),
}
#: The glibc libraries manylinux_2_28 lets a wheel assume (auditwheel's policy
#: lists these among its allowed libraries; the rest of that list is not glibc).
ALLOWED_NEEDED = {
    "libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6", "libmvec.so.1", "librt.so.1",
    "libresolv.so.2", "libanl.so.1", "libnsl.so.1", "libutil.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
}


def log(msg: str) -> None:
    print(f"build_wheels: {msg}", flush=True)


def fail(msg: str) -> None:
    sys.exit(f"build_wheels: FAILED: {msg}")


def version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def zig() -> str:
    """The zig binary of the ``ziglang`` wheel."""
    try:
        import ziglang
    except ImportError:
        fail("the ziglang package is missing (pip install -r requirements-dev.txt -c constraints.txt)")
    exe = Path(ziglang.__file__).resolve().parent / "zig"
    if not exe.exists():
        fail(f"no zig binary at {exe}")
    return str(exe)


def run(cmd: list[str], logfile: Path, **kw) -> None:
    """Run cmd with its output in logfile; on failure show the log's tail."""
    with open(logfile, "w") as out:
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        fail(f"{' '.join(cmd[:4])} ... exited {r.returncode} (full log: {logfile})")


def build_sdist(out: Path, logs: Path) -> Path:
    ver = version()
    target = out / f"crewcore-{ver}.tar.gz"
    target.unlink(missing_ok=True)
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(REPO)],
        logs / "sdist.log", cwd=REPO)
    if not target.exists():
        fail(f"the sdist build made no {target.name}")
    return target


def build_wheel(sdist: Path, arch: str, out: Path, logs: Path) -> Path:
    goarch, triple, _, _ = ARCHES[arch]
    plat = f"manylinux_{GLIBC[0]}_{GLIBC[1]}_{arch}"
    ver = version()
    wheel = out / f"crewcore-{ver}-py3-none-{plat}.whl"
    wheel.unlink(missing_ok=True)
    cc = f"{zig()} cc -target {triple}.{GLIBC[0]}.{GLIBC[1]} -mcpu=baseline"
    # No -g (cgo's default CGO_CFLAGS is "-O2 -g"): the binaries are stripped,
    # and debug info for SQLite's amalgamation is a large part of its compile.
    env = dict(os.environ, GOARCH=goarch, CGO_ENABLED="1", CC=cc,
               CXX=cc.replace(" cc ", " c++ "), CREWCORE_WHEEL_PLAT=plat,
               CGO_CFLAGS=os.environ.get("CREWCORE_WHEEL_CFLAGS", "-O2"))
    with tempfile.TemporaryDirectory(prefix=f"crewcore-wheel-{arch}-") as tmp:
        with tarfile.open(sdist) as tf:
            tf.extractall(tmp, filter="data")
        src = Path(tmp) / sdist.name.removesuffix(".tar.gz")
        run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(src)],
            logs / f"wheel-{arch}.log", cwd=src, env=env)
    if not wheel.exists():
        made = sorted(p.name for p in out.glob(f"crewcore-{ver}-*.whl"))
        fail(f"expected {wheel.name}; the build made {made}")
    return wheel


def elf_report(data: bytes, name: str) -> dict:
    """Machine, interpreter, needed libraries and highest GLIBC version of one ELF file."""
    import io

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    elf = ELFFile(io.BytesIO(data))
    needed: list[str] = []
    versions: set[tuple[int, ...]] = set()
    interp = None
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            interp = seg.get_interp_name()
    for sec in elf.iter_sections():
        if isinstance(sec, DynamicSection):
            needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        if isinstance(sec, GNUVerNeedSection):
            for _verneed, auxes in sec.iter_versions():
                for aux in auxes:
                    m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", aux.name)
                    if m:
                        versions.add(tuple(int(x) for x in m.group(1).split(".")))
    return {
        "file": name,
        "machine": elf["e_machine"],
        "interp": interp,
        "needed": needed,
        "max_glibc": max(versions) if versions else None,
    }


def check_wheel(wheel: Path, arch: str) -> list[str]:
    """Check wheel against its manylinux_2_28 tag; return the report lines."""
    _, _, machine, interp = ARCHES[arch]
    plat = f"manylinux_{GLIBC[0]}_{GLIBC[1]}_{arch}"
    lines = [f"{wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)"]
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next((n for n in names if n.endswith(".dist-info/WHEEL")), None)
        wheel_meta = zf.read(meta).decode() if meta else ""
        if "Root-Is-Purelib: false" not in wheel_meta:
            problems.append("WHEEL does not say Root-Is-Purelib: false")
        if f"Tag: py3-none-{plat}" not in wheel_meta:
            problems.append(f"WHEEL has no 'Tag: py3-none-{plat}' ({wheel_meta!r})")
        elves = []
        for n in names:
            with zf.open(n) as f:
                head = f.read(4)
            if head == b"\x7fELF":
                elves.append(elf_report(zf.read(n), n))
    want = {"crewcore/_lib/libcrewcore.so", "crewcore/_lib/crewcore"}
    if {e["file"] for e in elves} != want:
        problems.append(f"ELF files {sorted(e['file'] for e in elves)}, expected {sorted(want)}")
    for e in elves:
        size = zipfile.ZipFile(wheel).getinfo(e["file"]).file_size
        glibc = ".".join(map(str, e["max_glibc"])) if e["max_glibc"] else "none"
        lines.append(f"  {e['file']}: {size / 1e6:.1f} MB, {e['machine']}, needs {', '.join(e['needed'])}; "
                     f"highest symbol version GLIBC_{glibc}")
        if e["machine"] != machine:
            problems.append(f"{e['file']} is {e['machine']}, not {machine}")
        if e["max_glibc"] and e["max_glibc"] > GLIBC:
            problems.append(f"{e['file']} needs GLIBC_{glibc} > {GLIBC[0]}.{GLIBC[1]}")
        extra = set(e["needed"]) - ALLOWED_NEEDED
        if extra:
            problems.append(f"{e['file']} needs libraries outside manylinux: {sorted(extra)}")
        if e["file"].endswith("/crewcore") and e["interp"] != interp:
            problems.append(f"{e['file']} asks for interpreter {e['interp']}, not {interp}")
    # auditwheel's own verdict (it reads the .so; we checked the command above too).
    r = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)],
                       capture_output=True, text=True)
    verdict = " ".join(r.stdout.split())
    lines.append("  auditwheel show: " + (verdict or r.stderr.strip()))
    m = re.search(r'consistent with the following platform tag: "manylinux_(\d+)_(\d+)_(\w+)"', verdict)
    if r.returncode != 0 or not m:
        problems.append(f"auditwheel show did not find a manylinux tag (exit {r.returncode}): "
                        f"{verdict or r.stderr.strip()}")
    elif (int(m.group(1)), int(m.group(2))) > GLIBC or m.group(3) != arch:
        problems.append(f"auditwheel: consistent only with manylinux_{m.group(1)}_{m.group(2)}_{m.group(3)}")
    if problems:
        print("\n".join(lines), file=sys.stderr)
        fail(f"{wheel.name}: " + "; ".join(problems))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "dist"))
    ap.add_argument("--arch", action="append", choices=sorted(ARCHES),
                    help="wheel architecture (repeatable; default: all)")
    ap.add_argument("--sdist-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    t0 = time.monotonic()
    sdist = build_sdist(out, logs)
    log(f"sdist {sdist.relative_to(out.parent) if out.parent in sdist.parents else sdist} "
        f"({sdist.stat().st_size / 1e3:.0f} kB)")
    if args.sdist_only:
        return
    report: dict[str, list[str]] = {}

    def one(arch: str) -> tuple[str, list[str], float]:
        t = time.monotonic()
        wheel = build_wheel(sdist, arch, out, logs)
        return arch, check_wheel(wheel, arch), time.monotonic() - t

    # The architectures build at once (each build is mostly one single-threaded
    # C compile of SQLite); their reports are printed in a fixed order.
    arches = args.arch or list(ARCHES)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(arches)) as pool:
        results = list(pool.map(one, arches))
    for arch, lines, took in results:
        report[arch] = lines
        log(f"{arch}: built and checked in {took:.0f} s")
        for line in lines:
            print("  " + line, flush=True)
    (logs / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"done in {time.monotonic() - t0:.0f} s: {out}")


if __name__ == "__main__":
    main()

"""Replaces each CUDA library of PyPI's torch (site-packages/nvidia/**) by a stub with the same exports.

PyPI serves Linux torch only as the CUDA build: libtorch links against cudart, cuBLAS, cuDNN, NCCL, ... (~2.7 GB of
nvidia-* wheels), so `import torch` fails without them even on a machine without a GPU. A stub keeps the library's
soname, symbol names, symbol versions, data sizes and thread-local objects, so the dynamic loader binds torch to it;
the functions behave as the real library does on a machine without a driver or device: calls return 100
(cudaErrorNoDevice in the CUDA runtime), the error-string functions return a message, cudaGetDevice says device 0,
cudaGetLastError says no error. torch asks cudaGetDeviceCount, is told there is no device, and
`torch.cuda.is_available()` is False; a CUDA call raises torch's usual error with the stub's message (transformers
catches it when it asks whether a stream is capturing). Headers, tools and static libraries of those wheels are
removed.

Usage: python3 cuda_stubs.py SITE_PACKAGES/nvidia      (needs gcc and binutils' readelf)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NO_DEVICE = 100
MESSAGE = "no CUDA device (a stub of the CUDA library in mmft's CPU image)"
STRING_RESULTS = ("GetErrorString", "GetErrorName", "GetStatusString", "GetStatusName", "GetErrorMessage")
SYMBOL_NAME = re.compile(r"^[A-Za-z_.$][A-Za-z0-9_.$]*$")
VERSION_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
# Some of these libraries export the C++ runtime they link statically (cuFile, cuSPARSELt, cuDNN's graph library).
# A stub must not: loaded before libstdc++, its std::string would stand in for the real one. So no stub exports a name
# of the C++ runtime's namespaces or one that the system's C and C++ runtime libraries define.
RUNTIME_PREFIXES = tuple(
    f"{prefix}{namespace}"
    for prefix in ("_ZN", "_ZNK", "_ZTI", "_ZTS", "_ZTV", "_ZTIN", "_ZTSN", "_ZTVN")
    for namespace in ("St", "9__gnu_cxx", "10__cxxabiv1")
) + ("_ZSt", "__cxa_", "__gxx_", "_Znw", "_Zna", "_Zdl", "_Zda")
RUNTIME_LIBRARIES = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1")
# readelf --dyn-syms -W: "  12: 0000000000012340    42 FUNC    GLOBAL DEFAULT   12 cudaMalloc@@libcudart.so.13"
SYMBOL_LINE = re.compile(r"^\s*\d+:\s+[0-9a-f]+\s+(\d+|0x[0-9a-f]+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)")


@dataclass(frozen=True)
class Export:
    name: str
    version: str | None  # None: unversioned
    default: bool  # name@@version (default) rather than name@version (an older, hidden one)
    kind: str  # FUNC, OBJECT, TLS, ...
    size: int
    absolute: bool


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", *args], check=True, capture_output=True, text=True).stdout


def is_elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def soname(path: Path) -> str:
    found = re.search(r"Library soname: \[([^\]]+)\]", readelf("-d", "-W", str(path)))
    return found.group(1) if found else path.name


def defined_names(path: Path) -> set[str]:
    return {export.name for export in exports(path, set())}


def runtime_library_names() -> set[str]:
    listing = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    paths = re.findall(r"=> (\S+)", listing)
    found = [Path(path) for path in paths if Path(path).name in RUNTIME_LIBRARIES and "64" in path]
    if {path.name for path in found} != set(RUNTIME_LIBRARIES):
        raise SystemExit(f"cuda_stubs: ldconfig -p lists {found}, not all of {RUNTIME_LIBRARIES}")
    return set().union(*(defined_names(path) for path in found))


def exports(path: Path, runtime_names: set[str]) -> list[Export]:
    found = []
    for line in readelf("--dyn-syms", "-W", str(path)).splitlines():
        match = SYMBOL_LINE.match(line)
        if not match:
            continue
        size, kind, bind, section, full_name = match.groups()
        if section == "UND" or bind not in ("GLOBAL", "WEAK", "UNIQUE"):
            continue
        default = "@@" in full_name
        name, _, version = full_name.replace("@@", "@").partition("@")
        found.append(Export(name, version or None, default, kind, int(size, 0), section == "ABS"))
    versions = {symbol.version for symbol in found}
    # An absolute symbol named like a version is the marker of that version's definition, not a symbol.
    symbols = [
        symbol for symbol in found
        if not (symbol.absolute and symbol.name in versions | {symbol.version})
        and not symbol.name.startswith(RUNTIME_PREFIXES) and symbol.name not in runtime_names
    ]
    for symbol in symbols:
        if not SYMBOL_NAME.match(symbol.name):
            raise SystemExit(f"cuda_stubs: {path}: unexpected symbol name {symbol.name!r}")
    return symbols


def function_body(name: str) -> list[str]:
    """What a stub function does: what the real library does on a machine without a CUDA driver or device."""
    if name.endswith(STRING_RESULTS):  # cudaGetErrorString, cublasGetStatusString, ...: a readable message
        return ["  leaq __mmft_stub_message(%rip), %rax", "  ret"]
    if name in ("cudaGetDevice", "cudaDriverGetVersion"):  # device 0 is current; driver version 0: none installed
        return ["  movl $0, (%rdi)", "  xorl %eax, %eax", "  ret"]
    if name in ("cudaGetLastError", "cudaPeekAtLastError"):
        return ["  xorl %eax, %eax", "  ret"]
    return [f"  movl ${NO_DEVICE}, %eax", "  ret"]


def assembly(symbols: list[Export]) -> str:
    lines = ['.section .note.GNU-stack,"",@progbits',
             ".section .rodata", "__mmft_stub_message:", f'  .asciz "{MESSAGE}"']
    for index, symbol in enumerate(symbols):
        # A symbol of an older, non-default version gets an internal label bound to that version with .symver.
        label = symbol.name if symbol.default or symbol.version is None else f"__mmft_stub_{index}"
        if symbol.kind in ("FUNC", "IFUNC", "NOTYPE"):
            lines += [".text", f".globl {label}", f".type {label}, @function", f"{label}:", *function_body(symbol.name)]
        else:
            section, kind = (".tbss,\"awT\",@nobits", "@tls_object") if symbol.kind == "TLS" else (".bss", "@object")
            lines += [f".section {section}", ".balign 16", f".globl {label}", f".type {label}, {kind}",
                      f".size {label}, {max(symbol.size, 1)}", f"{label}:", f"  .zero {max(symbol.size, 1)}"]
        if label != symbol.name:
            lines.append(f".symver {label}, {symbol.name}@{symbol.version}")
    return "\n".join(lines) + "\n"


def version_script(symbols: list[Export]) -> str:
    nodes: dict[str, list[str]] = {}
    for symbol in symbols:
        if symbol.version:
            nodes.setdefault(symbol.version, [])
            if symbol.default:
                nodes[symbol.version].append(symbol.name)
    return "".join(
        f"{version} {{ global: {''.join(name + '; ' for name in names)}local: __mmft_stub_*; }};\n"
        for version, names in nodes.items()
    )


def stub(path: Path, work: Path, runtime_names: set[str]) -> None:
    symbols = exports(path, runtime_names)
    if not all(VERSION_NAME.match(symbol.version) for symbol in symbols if symbol.version):
        # ld's version scripts cannot name such a version (libnvrtc-builtins.alt.so.13.0): the stub exports the names
        # unversioned, which the loader accepts with a warning. Only nvrtc opens those libraries, on a GPU.
        symbols = [Export(symbol.name, None, True, symbol.kind, symbol.size, symbol.absolute)
                   for symbol in symbols if symbol.default or symbol.version is None]
    source, script = work / "stub.s", work / "stub.map"
    source.write_text(assembly(symbols))
    command = ["gcc", "-shared", "-nostdlib", "-o", str(work / "stub.so"), f"-Wl,-soname,{soname(path)}", str(source)]
    if any(symbol.version for symbol in symbols):
        script.write_text(version_script(symbols))
        command.append(f"-Wl,--version-script,{script}")
    subprocess.run(command, check=True)
    shutil.copymode(path, work / "stub.so")
    (work / "stub.so").replace(path)


def main() -> None:
    root = Path(sys.argv[1])
    before = sum(file.stat().st_size for file in root.rglob("*") if file.is_file())
    for folder in [*root.glob("*/include"), *root.glob("*/bin")]:
        shutil.rmtree(folder)
    for archive in root.rglob("*.a"):  # static libraries: for linking CUDA programs, never loaded
        archive.unlink()
    libraries = sorted(f for f in root.rglob("*.so*") if f.is_file() and not f.is_symlink() and is_elf(f))
    if not libraries:
        raise SystemExit(f"cuda_stubs: no shared library under {root}")
    runtime_names = runtime_library_names()
    with tempfile.TemporaryDirectory() as work:
        for library in libraries:
            stub(library, Path(work), runtime_names)
    after = sum(file.stat().st_size for file in root.rglob("*") if file.is_file())
    print(f"cuda_stubs: {len(libraries)} libraries stubbed under {root}: {before / 1e6:.0f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

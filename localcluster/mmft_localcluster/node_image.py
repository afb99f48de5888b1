"""Images of one static binary (the real node's pause image), written as a `docker save` archive without Docker.

No image registry is reachable here, so the sandbox image cannot be pulled; `ctr images import` reads this archive
as it reads `docker save` output. The archive is deterministic: the same binary gives the same image ID.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path


def write_single_binary_image(binary: Path, entrypoint: str, reference: str, archive: Path) -> str:
    """Writes ``archive`` holding ``reference`` = an image whose only file is ``binary`` at ``entrypoint``; returns the
    image ID (sha256 of its config)."""
    layer = _layer_tar(binary.read_bytes(), entrypoint.lstrip("/"))
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [entrypoint], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "created": "1970-01-01T00:00:00Z",
        },
        sort_keys=True,
    ).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [{"Config": f"{config_digest}.json", "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}]
    ).encode()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            (f"{layer_digest}/layer.tar", layer),
            (f"{config_digest}.json", config),
            ("manifest.json", manifest),
        ):
            _add(tar, name, data, 0o644)
    return f"sha256:{config_digest}"


def _layer_tar(content: bytes, path: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, path, content, 0o755)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))

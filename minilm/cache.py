"""The artifact cache: each stage builds once, and reuses its outputs while nothing changed.

A stage writes its outputs into a run folder, ``$MINILM_HOME/runs/<preset>/<stage>/`` (by default
``data/`` of the course checkout), with a `manifest.json` that records the stage's config, the
fingerprints of its inputs and a summary of what it produced. `cached_stage` returns the existing
folder when its manifest matches the request, and builds the stage otherwise.

The build happens in a hidden temporary folder beside the target; the manifest is written last,
and only then is the folder renamed into place. So a folder without a manifest, or a build that
crashed half-way, is never taken for a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from minilm.files import atomic_write_json, fingerprint

MANIFEST = "manifest.json"


def home() -> Path:
    """Where the course reads and writes data: $MINILM_HOME, else `data/` beside the package's checkout."""
    if os.environ.get("MINILM_HOME"):
        return Path(os.environ["MINILM_HOME"]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout / "data"
    return Path.cwd() / "data"


def run_dir(stage: str, preset: str) -> Path:
    """The folder of one stage's outputs for one preset."""
    return home() / "runs" / preset / stage


@dataclass
class Artifact:
    """A finished stage: its folder and its manifest."""

    path: Path
    manifest: dict
    reused: bool = False  # True when this call found the stage already built

    @property
    def key(self) -> str:
        """The fingerprint of config and inputs; later stages list it among their inputs."""
        return self.manifest["key"]

    @property
    def summary(self) -> dict:
        return self.manifest["summary"]


def load_artifact(path: Path) -> Artifact | None:
    """The artifact in `path`, or None when the folder holds no finished build."""
    import json

    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not all((Path(path) / name).exists() for name in manifest.get("files", [])):
        return None
    return Artifact(Path(path), manifest)


def cached_stage(
    stage: str,
    config,
    build: Callable[[Path], dict],
    *,
    preset: str,
    inputs: dict[str, str] | None = None,
    code: list[str | os.PathLike] = (),
    force: bool = False,
) -> Artifact:
    """Return the stage's artifact, building it with ``build(folder) -> summary`` when needed.

    `config` is the stage's config dataclass; `inputs` maps each upstream artifact to its key;
    `code` lists the source files or folders of the stage, whose contents are fingerprinted too,
    so that an update of the course's code rebuilds what it changes. Any change of the three gives
    a new key, and a new key rebuilds. `build` writes its files into the folder it is given and
    returns a JSON-able summary; files it writes are listed in the manifest and checked on reuse.
    """
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    inputs = dict(inputs or {})
    key = fingerprint({"stage": stage, "config": config_dict, "inputs": inputs, "code": code_fingerprint(code)})
    target = run_dir(stage, preset)

    existing = None if force else load_artifact(target)
    if existing is not None and existing.manifest.get("key") == key:
        existing.reused = True
        return existing

    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.parent / f".{stage}.building-{uuid.uuid4().hex[:8]}"
    building.mkdir()
    started = time.perf_counter()
    try:
        summary = build(building)
        files = sorted(str(p.relative_to(building)) for p in building.rglob("*") if p.is_file())
        manifest = {
            "stage": stage,
            "preset": preset,
            "key": key,
            "config": config_dict,
            "inputs": inputs,
            "summary": summary,
            "files": files,
            "seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(building / MANIFEST, manifest)
        _swap_into_place(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Artifact(target, manifest)


def code_fingerprint(paths) -> str:
    """A fingerprint of the contents of source files (folders: every .py file inside, recursively)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _swap_into_place(building: Path, target: Path) -> None:
    """Rename the finished folder onto the target; the old one is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(building, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""The artifact cache: each stage builds once, and reuses its outputs while nothing changed.

A stage writes its outputs into a run folder, ``$MINILM_HOME/runs/<preset>/<stage>/`` (by default
``data/`` of the course checkout), with a `manifest.json` that records the stage's config, the
fingerprints of its inputs and a summary of what it produced. `cached_stage` returns the existing
folder when its manifest matches the request, and builds the stage otherwise.

The build happens in a hidden temporary folder beside the target; the manifest is written last,
and only then is the folder renamed into place. So a folder without a manifest, or a build that
crashed half-way, is never taken for a finished one.

Each stage says what it does on the `minilm` logger: a line when its build starts, and one when it
ends with what it produced and how long it took, or one saying that it reused the cache (with the
time the reused build took). The command line prints these lines; a notebook or a test, which
configures no logging, does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from minilm.files import atomic_write_json, fingerprint

MANIFEST = "manifest.json"
log = logging.getLogger("minilm")


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
    seconds: float = 0.0  # what this call took: the build, or only the look-up when reused

    @property
    def build_seconds(self) -> float:
        """How long the stage's build took, whenever it ran (this call's, or the one whose result it reused)."""
        return self.manifest["seconds"]

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
    produced: Callable[[dict], str] | None = None,
) -> Artifact:
    """Return the stage's artifact, building it with ``build(folder) -> summary`` when needed.

    `config` is the stage's config dataclass; `inputs` maps each upstream artifact to its key;
    `code` lists the source files or folders of the stage, whose contents are fingerprinted too,
    so that an update of the course's code rebuilds what it changes. Any change of the three gives
    a new key, and a new key rebuilds. `build` writes its files into the folder it is given and
    returns a JSON-able summary; files it writes are listed in the manifest and checked on reuse.
    `produced` says in a few words what a summary describes, for the line that ends the stage
    (default: the number and size of the files).
    """
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    inputs = dict(inputs or {})
    key = fingerprint({"stage": stage, "config": config_dict, "inputs": inputs, "code": code_fingerprint(code)})
    target = run_dir(stage, preset)

    started = time.perf_counter()
    existing = None if force else load_artifact(target)
    if existing is not None and existing.manifest.get("key") == key:
        existing.reused, existing.seconds = True, time.perf_counter() - started
        log.info(f"{stage}: reused the cache (built in {existing.build_seconds:.1f} s on "
                 f"{existing.manifest['created'][:16].replace('T', ' ')}): {_produced(existing, produced)}")
        return existing

    log.info(f"{stage}: building in {shown_path(target)}/ (preset {preset})")
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.parent / f".{stage}.building-{uuid.uuid4().hex[:8]}"
    building.mkdir()
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
    artifact = Artifact(target, manifest, seconds=time.perf_counter() - started)
    log.info(f"{stage}: built in {artifact.build_seconds:.1f} s: {_produced(artifact, produced)}")
    return artifact


def _produced(artifact: Artifact, produced: Callable[[dict], str] | None) -> str:
    """What the stage made, in words, and where it is."""
    if produced is not None:
        what = produced(artifact.summary)
    else:
        files = artifact.manifest["files"]
        size = sum((artifact.path / name).stat().st_size for name in files)
        what = f"{len(files)} file{'s' if len(files) != 1 else ''}, {size / 1e6:,.1f} MB"
    return f"{what}, in {shown_path(artifact.path)}/"


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it is inside it (data/runs/ci/...), else in full."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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

"""A run directory: runs/<UTC-time>_<spec-name>_<spec-hash8>/.

Everything is written atomically (temp file + rename), so a crash never
leaves a half-written file behind. The spec hash covers what changes results
(model, dtype, languages, interventions, tasks), not transport settings, so a
rerun of the same spec finds and reuses its directory. It is computed on the
resolved spec (includes merged, `--set` overrides applied), so an override that
changes a result-relevant value gives a new directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from ..spec.base import is_new_field_at_default
from .locks import acquire, held, release, runs_folder_lock
from .verified import read_json, warn_damaged

if TYPE_CHECKING:
    from ..spec.run_spec import RunSpec

MANIFEST_SCHEMA = 1

# Fields that do not change results: excluded from the spec hash. A sweep's grid and selection rule are out too:
# every unit is keyed by a condition id that spells out its swept values, so a widened grid reuses the run
# directory and its finished units. `analysis` only reads the run (its representations are cached under
# analysis/ with their own key), so editing it reuses the evaluation.
_TRANSPORT = {"name": True, "description": True, "batch_size": True, "stack_rows": True, "backend": True,
              "model": {"device"}, "sweep": True, "select": True, "analysis": True}


def spec_hash(spec: RunSpec) -> str:
    """SHA-256 of the canonical JSON of the result-relevant part of the spec."""
    data = without_new_defaults(spec, spec.model_dump(mode="json", exclude=_TRANSPORT))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def without_new_defaults(model, data):
    """`data` (the JSON dump of `model`) without the `NewField`s that hold their default, at any depth: a field
    added with a default leaves existing specs' hashes as they were."""
    if isinstance(model, BaseModel) and isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in type(model).model_fields:
                if is_new_field_at_default(model, key):
                    continue
                value = without_new_defaults(getattr(model, key), value)
            out[key] = value
        return out
    if isinstance(model, (list, tuple)) and isinstance(data, list) and len(model) == len(data):
        return [without_new_defaults(item, value) for item, value in zip(model, data)]
    if isinstance(model, dict) and isinstance(data, dict):
        return {key: without_new_defaults(model.get(key), value) for key, value in data.items()}
    return data


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: `path` holds the old bytes or the new, never a part.
    An OSError (disk full, permission denied) names `path`, whatever step it came from."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(data) -> object:
    """`data` with every NaN or infinite float replaced by None: JSON has no such numbers, so a value that is
    undefined (e.g. a std over one language) is written as `null`."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def atomic_write_json(path: Path, data, *, indent: int = 2) -> None:
    """Strict JSON (never `NaN`/`Infinity` tokens: such values become `null`), written atomically."""
    text = json.dumps(strict_json(data), indent=indent, ensure_ascii=False, sort_keys=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def jsonl_text(rows) -> str:
    """One strict-JSON object per line (non-finite floats as `null`)."""
    return "".join(json.dumps(strict_json(row), ensure_ascii=False, allow_nan=False) + "\n" for row in rows)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("clas-graph", "torch", "transformers", "nnsight", "pydantic", "lm_eval"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


RUN_LOCK = ".lock"


@dataclass
class RunDir:
    path: Path
    spec_hash: str
    lock: FileLock | None = None
    """Held from `for_spec` until `release`: one writer per run directory."""

    @staticmethod
    def name_suffix(spec: RunSpec) -> str:
        """How every run directory of this exact spec ends: `<time stamp>_<name>_<8 hex of the spec hash>`."""
        return f"_{spec.name}_{spec_hash(spec)[:8]}"

    @staticmethod
    def existing(spec: RunSpec, root: Path, holding: str = "manifest.json") -> Path | None:
        """The newest directory of this exact spec (same hash) holding `holding` (the manifest: the one `for_spec`
        reuses; `metrics.json`: the newest evaluated one); None if there is none."""
        found = sorted(p for p in root.glob(f"*{RunDir.name_suffix(spec)}") if (p / holding).is_file())
        return found[-1] if found else None

    @classmethod
    def for_spec(cls, spec: RunSpec, root: Path, *, console: Console | None = None) -> "RunDir":
        """Reuse the newest directory of this exact spec (same hash), or create a new one; either way with its
        lock held (a second process waits, or refuses, naming the holder). The runs root is locked while the
        directory is chosen, so two processes never create two directories for one spec."""
        digest = spec_hash(spec)
        root.mkdir(parents=True, exist_ok=True)
        with held(runs_folder_lock(root, "choose"), f"runs folder {root}", console=console):
            existing = cls.existing(spec, root)
            if existing is None:
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                path = root / f"{stamp}{cls.name_suffix(spec)}"
                path.mkdir(parents=True, exist_ok=False)
                run = cls(path, digest, acquire(path / RUN_LOCK, f"run directory {path}", console=console))
                run.update_manifest(status="created")  # makes it the one `existing` finds
                return run
        # waiting for another process's run happens outside the runs-root lock (other specs go on meanwhile)
        return cls(existing, digest, acquire(existing / RUN_LOCK, f"run directory {existing}", console=console))

    def release(self) -> None:
        if self.lock is not None:
            release(self.lock)
            self.lock = None

    def write_spec(self, spec: RunSpec) -> None:
        if spec.source and Path(spec.source).is_file():
            atomic_write_text(self.path / "spec.yaml", Path(spec.source).read_text(encoding="utf-8"))
        atomic_write_json(self.path / "spec.resolved.json", spec.model_dump(mode="json"))

    def manifest(self, *, report: bool = True) -> dict:
        """The manifest; {} when there is none, or when it is damaged (said on stderr when `report`: the next
        update rebuilds it)."""
        path = self.path / "manifest.json"
        if not path.is_file():
            return {}
        manifest = read_json(path)
        if not isinstance(manifest, dict):
            if report:
                warn_damaged(path, "rebuilding it")
            return {}
        return manifest

    def update_manifest(self, **fields) -> dict:
        manifest = self.manifest() or {
            "schema_version": MANIFEST_SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(),
            "spec_hash": self.spec_hash,
        }
        manifest.update(fields)
        manifest["updated"] = datetime.now(timezone.utc).isoformat()
        atomic_write_json(self.path / "manifest.json", manifest)
        return manifest

    def start(self, spec: RunSpec, *, backend: dict, seeds: dict, console: Console | None = None) -> None:
        previous = self.manifest(report=False)
        if previous.get("status") == "running":  # we hold the lock, so the process that wrote this is gone
            (console or Console(stderr=True)).print(
                f"[yellow]the previous run in {escape(str(self.path))} (started {previous.get('updated', '?')}) "
                "did not finish (killed?); recorded as interrupted, finished units are reused[/]")
            interrupted = [*previous.get("interrupted_runs", []),
                           {"started": previous.get("started"), "last_update": previous.get("updated"),
                            "found": datetime.now(timezone.utc).isoformat()}]
            self.update_manifest(status="interrupted", interrupted_runs=interrupted)
        self.write_spec(spec)
        self.update_manifest(
            status="running", started=datetime.now(timezone.utc).isoformat(), spec_name=spec.name,
            spec_source=spec.source, model=spec.model.display_name, versions=_versions(), git_commit=_git_commit(),
            backend=backend, seeds=seeds,
            overrides=list(spec.overrides),  # --set KEY=VALUE on top of spec.yaml; spec.resolved.json has the result
        )

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
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..spec.base import is_new_field_at_default

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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


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


@dataclass
class RunDir:
    path: Path
    spec_hash: str

    @staticmethod
    def existing(spec: RunSpec, root: Path) -> Path | None:
        """The newest directory of this exact spec (same hash): the one `for_spec` reuses; None if there is none."""
        suffix = f"_{spec.name}_{spec_hash(spec)[:8]}"
        found = sorted(p for p in root.glob(f"*{suffix}") if (p / "manifest.json").is_file())
        return found[-1] if found else None

    @classmethod
    def for_spec(cls, spec: RunSpec, root: Path) -> "RunDir":
        """Reuse the newest directory of this exact spec (same hash), or create a new one."""
        digest = spec_hash(spec)
        suffix = f"_{spec.name}_{digest[:8]}"
        existing = cls.existing(spec, root)
        if existing is not None:
            return cls(existing, digest)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = root / f"{stamp}{suffix}"
        path.mkdir(parents=True, exist_ok=False)
        return cls(path, digest)

    def write_spec(self, spec: RunSpec) -> None:
        if spec.source and Path(spec.source).is_file():
            atomic_write_text(self.path / "spec.yaml", Path(spec.source).read_text(encoding="utf-8"))
        atomic_write_json(self.path / "spec.resolved.json", spec.model_dump(mode="json"))

    def manifest(self) -> dict:
        path = self.path / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

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

    def start(self, spec: RunSpec, *, backend: dict, seeds: dict) -> None:
        self.write_spec(spec)
        self.update_manifest(
            status="running", spec_name=spec.name, spec_source=spec.source, model=spec.model.display_name,
            versions=_versions(), git_commit=_git_commit(), backend=backend, seeds=seeds,
            overrides=list(spec.overrides),  # --set KEY=VALUE on top of spec.yaml; spec.resolved.json has the result
        )

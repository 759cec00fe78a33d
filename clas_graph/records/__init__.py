"""Run directories: identity (spec hash), atomic strict-JSON writes, locks, manifest, verified reads."""

from .locks import held, runs_folder_lock
from .results import (
    ANALYSIS_SCHEMA,
    METRICS_SCHEMA,
    AnalysisDocument,
    MetricsDocument,
    TaskResult,
    UnitRecord,
    read_record,
    validated,
)
from .run_dir import (
    RunDir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    jsonl_text,
    spec_hash,
    strict_json,
)
from .verified import file_sha256, read_json, sha256_hex, warn_damaged

__all__ = ["ANALYSIS_SCHEMA", "AnalysisDocument", "METRICS_SCHEMA", "MetricsDocument", "RunDir", "TaskResult",
           "UnitRecord", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "file_sha256", "held",
           "jsonl_text", "read_json", "read_record", "runs_folder_lock", "sha256_hex", "spec_hash", "strict_json",
           "validated", "warn_damaged"]

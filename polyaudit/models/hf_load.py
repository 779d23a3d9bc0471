"""Loading Hugging Face models through transformers' own `from_pretrained`: hub ids and
save_pretrained folders, the local cache and HF_HUB_OFFLINE honoured, safetensors preferred, pickle
checkpoints only through `torch.load(weights_only=True)`, `trust_remote_code` only when the user
asks; every failure one line (`PolyauditError`). The site table of each family is
`polyaudit.models.hf`."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from polyaudit.errors import PolyauditError
from polyaudit.models.base import DTYPES
from polyaudit.models.hf import ENCODER_TYPES, HFAdapter, make_hf_adapter


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence transformers' progress bars and load reports for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    if not progress:
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (transformers' messages are paragraphs)."""
    text = str(e).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return first.rstrip(".") or type(e).__name__


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE) or env


def _config_error(
    target: str, local: bool, e: Exception, revision: str | None = None
) -> PolyauditError:
    if isinstance(e, ValueError) and "trust_remote_code" in str(e):
        return PolyauditError(
            f"model {target!r} needs to run its own Python code (auto_map in its config), which polyaudit "
            "never runs unless asked: pass --trust-remote-code only if you trust its author"
        )
    if local or not isinstance(e, OSError):
        return PolyauditError(
            f"cannot read the config of {target!r}: {_first_line(e)}; "
            "pass a folder written by save_pretrained"
        )
    why = (
        "HF_HUB_OFFLINE is set"
        if _offline()
        else "the hub could not be reached or has no such model"
    )
    at = f" at revision {revision!r}" if revision else ""
    return PolyauditError(
        f"cannot load {target!r}{at} from the Hugging Face hub: it is not in the local cache and "
        f"{why}; download it once with network access, or pass a local folder"
    )


def _auto_classes(config: Any) -> list[Any]:
    import transformers as tf
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    archs = list(getattr(config, "architectures", None) or [])
    mt = config.model_type
    if (
        mt in ENCODER_TYPES or any(a.endswith("ForMaskedLM") for a in archs)
    ) and mt in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return [tf.AutoModelForMaskedLM, tf.AutoModel]
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return [tf.AutoModelForCausalLM, tf.AutoModel]
    return [tf.AutoModel]


def _weights_error(target: str, e: Exception) -> PolyauditError:
    from safetensors import SafetensorError

    if isinstance(e, pickle.UnpicklingError):
        return PolyauditError(
            f"refusing to unpickle the checkpoint of {target!r}: it holds more than tensors "
            "(torch.load(weights_only=True) rejected it); convert it to safetensors from a trusted copy"
        )
    if isinstance(e, SafetensorError):
        return PolyauditError(
            f"corrupt weights in {target!r}: {_first_line(e)}; "
            "re-save or re-download the checkpoint"
        )
    return PolyauditError(
        f"cannot load the weights of {target!r}: {_first_line(e)}; "
        "check the folder holds a complete checkpoint"
    )


def _commit_hash(target: str, revision: str | None, cache_dir: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(target, "config.json", cache_dir=cache_dir, revision=revision)
    m = (
        re.search(r"snapshots/([0-9a-f]{40})/", str(path).replace(os.sep, "/"))
        if isinstance(path, str)
        else None
    )
    return m.group(1) if m else revision


def _snapshot_folder(
    target: str, revision: str | None, cache_dir: str | None, filename: str = "config.json"
) -> str | None:
    """The local snapshot folder of a hub id whose `filename` is already in the cache (None when
    it is not)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(target, filename, cache_dir=cache_dir, revision=revision)
    return os.path.dirname(path) if isinstance(path, str) else None


def _dtype_and_pickle_kwargs(torch_dtype: Any) -> dict[str, Any]:
    """`from_pretrained` keywords for the weights' dtype and safe unpickling, in this transformers
    release's names: `dtype` and `weights_only` from 4.56 on; before, `torch_dtype` (and its loader
    already calls torch.load with weights_only=True)."""
    from packaging.version import Version
    from transformers import __version__

    if Version(__version__) >= Version("4.56"):
        return {"dtype": torch_dtype, "weights_only": True}
    return {"torch_dtype": torch_dtype}


def max_positions(config: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_hf(
    target: str,
    *,
    local: bool,
    device: str = "cpu",
    dtype: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    progress: bool = False,
) -> tuple[nn.Module, HFAdapter, Any, dict[str, Any]]:
    """Load a hub id or a save_pretrained folder: (model, adapter, tokenizer, info).

    `device` is "cpu", "cuda" or "auto" (accelerate's device_map="auto" when cuda is available);
    `dtype` None means "auto": the checkpoint's own dtype. info has revision and max_positions.
    """
    import transformers as tf
    from safetensors import SafetensorError

    if local and not os.path.isfile(os.path.join(target, "config.json")):
        raise PolyauditError(
            f"folder {target!r} has no config.json: pass a folder written by "
            "save_pretrained (model and tokenizer)"
        )
    hub = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    with _quiet(progress):
        try:
            config = tf.AutoConfig.from_pretrained(target, **hub)
        except (OSError, ValueError, KeyError) as e:
            raise _config_error(target, local, e, revision) from e
        torch_dtype: Any = "auto" if dtype in (None, "auto") else DTYPES[dtype]
        device_map: Any = None
        if device == "auto" and torch.cuda.is_available():
            device_map = "auto"  # accelerate spreads the weights over the GPUs and the host
        else:
            folder = target if local else _snapshot_folder(target, revision, cache_dir)
            if folder is not None:
                from polyaudit.models.memory import check_load_fits

                check_load_fits(target, folder, DTYPES.get(dtype or "auto"), device)
        model: nn.Module | None = None
        missing: list[str] = []
        for cls in _auto_classes(config):
            try:
                candidate, info = cls.from_pretrained(
                    target,
                    config=config,
                    device_map=device_map,
                    output_loading_info=True,
                    **_dtype_and_pickle_kwargs(torch_dtype),
                    **hub,
                )
            except (
                OSError,
                ValueError,
                RuntimeError,
                SafetensorError,
                pickle.UnpicklingError,
            ) as e:
                if local or not isinstance(e, OSError) or "connect" not in str(e):
                    raise _weights_error(target, e) from e
                raise _config_error(target, local, e, revision) from e
            missing = sorted(info.get("missing_keys", ()))
            if not missing:
                model = candidate
                break
        if model is None:
            raise PolyauditError(
                f"checkpoint {target!r} lacks {len(missing)} weight tensor(s) (e.g. {missing[0]}): the model "
                "would be partly random; pass a complete checkpoint"
            )
    model.eval()
    model.requires_grad_(False)
    adapter = make_hf_adapter(model)  # before the tokenizer: an unknown architecture is the news
    with _quiet(progress):
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(target, **hub)
        except (OSError, ValueError, KeyError) as e:
            raise PolyauditError(
                f"cannot load a tokenizer for {target!r}: {_first_line(e)}; "
                "save one next to the model (tokenizer.save_pretrained)"
            ) from e
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device == "cuda":
        model = model.to("cuda")
    info_out = {
        "revision": None if local else _commit_hash(target, revision, cache_dir),
        "max_positions": max_positions(config),
        "model_type": config.model_type,
        "class": type(model).__name__,
    }
    return model, adapter, tokenizer, info_out

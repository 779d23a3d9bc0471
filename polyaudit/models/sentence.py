"""sentence-transformers checkpoints: the transformer they wrap and the pooling they apply.

A sentence-transformers (ST) checkpoint is a transformers checkpoint plus `modules.json`, the
pipeline ST runs, e.g. `Transformer -> Pooling [-> Dense] [-> Normalize]`. The Transformer
module's `path` is "" when the checkpoint sits at the folder's root (current ST) or a subfolder
such as `0_Transformer/` (old ST); the Pooling module's `<path>/config.json` says which modes it
pools with (old `pooling_mode_*_token(s)` booleans, or ST >= 5's `pooling_mode`); the length ST
truncates inputs to is `max_seq_length` in `sentence_bert_config.json` beside the transformer (old
ST) or the tokenizer's `model_max_length` (ST >= 5).

polyaudit audits the transformer, loaded through the ordinary folder path
(`polyaudit.models.hf_load`), and records the pooling on the adapter
(`polyaudit.models.pooling.Pooling`): the pooled embedding is what semantic change of a headless
model is measured on. Modules after the pooling (Dense, Normalize) are named, not applied.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from polyaudit.errors import PolyauditError
from polyaudit.models.hf_load import _snapshot_folder
from polyaudit.models.pooling import CONFIG_KEYS, MODES, Pooling

MODULES_FILE = "modules.json"
ST_CONFIG_FILE = "sentence_bert_config.json"
# ST >= 5 names the modes in one `pooling_mode` key; its names, as polyaudit's
_MODE_NAMES = {**{m: m for m in MODES}, "mean_sqrt_len_tokens": "mean_sqrt_len"}
_COMMIT = re.compile(r"snapshots/([0-9a-f]{40})(/|$)")
_FIX = "re-save the model with sentence-transformers (SentenceTransformer.save)"


@dataclass(frozen=True)
class SentencePipeline:
    """What a folder's modules.json says: where the transformer is (`transformer`, relative to
    `folder`; "" is the folder itself), its pooling (None: the pipeline has no Pooling module) and
    the sequence length ST truncates inputs to (None: not given). `revision`: the hub commit of a
    cached snapshot folder (None for a local folder)."""

    folder: str
    transformer: str
    pooling: Pooling | None
    max_seq_length: int | None = None
    revision: str | None = None

    @property
    def transformer_folder(self) -> str:
        return os.path.join(self.folder, self.transformer) if self.transformer else self.folder


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PolyauditError(f"cannot read {what} {path!r}: {why}; {_FIX}") from None


def _kind(entry: dict[str, Any]) -> str:
    """The class name a modules.json `type` ends in (`sentence_transformers.models.Pooling` -> Pooling)."""
    return str(entry["type"]).rsplit(".", 1)[-1]


def _modules(folder: str) -> list[dict[str, Any]]:
    """modules.json's entries, each checked for a string `type` and a relative `path` inside the folder."""
    path = os.path.join(folder, MODULES_FILE)
    entries = _read_json(path, "the sentence-transformers pipeline")
    if not isinstance(entries, list) or not entries:
        raise PolyauditError(f"{path!r} is not a list of modules (each with a type and a path); {_FIX}")
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("type"), str)
                and isinstance(entry.get("path", ""), str)):
            raise PolyauditError(f"module {i} of {path!r} lacks a type or a path (strings); {_FIX}")
        rel = str(entry.get("path", ""))
        parts = rel.replace("\\", "/").split("/")
        if os.path.isabs(rel) or ".." in parts:
            raise PolyauditError(f"module {i} of {path!r} has path {rel!r} outside the folder; {_FIX}")
    return entries


def pooling_modes(config: Any, path: str) -> tuple[str, ...]:
    """The enabled modes of a Pooling config: ST >= 5's `pooling_mode` (a name or a list of names)
    or the older `pooling_mode_*` booleans (none enabled: mean, as sentence-transformers does)."""
    if not isinstance(config, dict):
        raise PolyauditError(f"pooling config {path!r} is not a JSON object; {_FIX}")
    if "pooling_mode" in config:
        named = config["pooling_mode"]
        names = [named] if isinstance(named, str) else named
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise PolyauditError(f"pooling config {path!r}: pooling_mode must be a mode name or a list of them; {_FIX}")
        unknown = [n for n in names if n not in _MODE_NAMES]
        if unknown:
            raise PolyauditError(f"pooling config {path!r}: unknown pooling mode(s) {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(_MODE_NAMES)}")
        # ST >= 5 concatenates a list in its own order, `Pooling.pool` in MODES order: the same
        # blocks permuted alike in every embedding, so the cosine between two of them is the same
        return tuple(dict.fromkeys(_MODE_NAMES[n] for n in names))
    given = {mode: config[key] for mode, key in CONFIG_KEYS.items() if key in config}
    if not given:
        raise PolyauditError(f"pooling config {path!r} names no pooling mode "
                             f"(pooling_mode, or {CONFIG_KEYS['mean']} and the like); {_FIX}")
    bad = [CONFIG_KEYS[m] for m, v in given.items() if not isinstance(v, bool)]
    if bad:
        raise PolyauditError(f"pooling config {path!r}: {', '.join(bad)} must be true or false; {_FIX}")
    return tuple(m for m in MODES if given.get(m)) or ("mean",)


def _max_seq_length(transformer_folder: str) -> int | None:
    path = os.path.join(transformer_folder, ST_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    config = _read_json(path, "the sentence-transformers config")
    value = config.get("max_seq_length") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_pipeline(folder: str, revision: str | None = None) -> SentencePipeline:
    """The pipeline of a folder holding modules.json: where its one Transformer module is and, when
    the pipeline has a Pooling module (right after the Transformer), that pooling."""
    entries = _modules(folder)
    where = os.path.join(folder, MODULES_FILE)
    kinds = [_kind(e) for e in entries]
    at = [i for i, k in enumerate(kinds) if k == "Transformer"]
    if len(at) != 1:
        have = "none" if not at else f"{len(at)}"
        raise PolyauditError(
            f"{where!r} must name one Transformer module (it has {have}; modules: {', '.join(kinds)}): "
            "polyaudit audits the transformer of a sentence-transformers pipeline; pass a transformers "
            "folder, or a factory (module.path:callable) for another pipeline"
        )
    t = at[0]
    rel = str(entries[t].get("path", "")).strip("/\\")
    pooling = None
    pools = [i for i, k in enumerate(kinds) if k == "Pooling"]
    if pools:
        p = pools[0]
        if p != t + 1:
            raise PolyauditError(
                f"{where!r}: the Pooling module must follow the Transformer module directly "
                f"(modules: {', '.join(kinds)}); polyaudit pools the transformer's own output"
            )
        pool_rel = str(entries[p].get("path", "")).strip("/\\")
        source = f"{pool_rel}/config.json" if pool_rel else "config.json"
        config_path = os.path.join(folder, pool_rel, "config.json")
        if not os.path.isfile(config_path):
            raise PolyauditError(f"the Pooling module of {where!r} has no {source}; {_FIX}")
        modes = pooling_modes(_read_json(config_path, "the pooling config"), config_path)
        pooling = Pooling(modes=modes, source=source, after=tuple(kinds[p + 1:]))
    return SentencePipeline(folder=folder, transformer=rel, pooling=pooling,
                            max_seq_length=_max_seq_length(os.path.join(folder, rel)), revision=revision)


def seq_limit(pipe: SentencePipeline, tokenizer: Any) -> int | None:
    """The length sentence-transformers truncates inputs to: `max_seq_length` of
    sentence_bert_config.json, else (as ST >= 5 saves it) the tokenizer's `model_max_length`
    (None where the tokenizer sets none: transformers' huge placeholder)."""
    if pipe.max_seq_length is not None:
        return pipe.max_seq_length
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def find_pipeline(target: str, *, local: bool, revision: str | None = None,
                  cache_dir: str | None = None) -> SentencePipeline | None:
    """The sentence-transformers pipeline of a local folder or of a hub id whose snapshot is in the
    local cache with its modules.json; None for anything else (loaded as before). The transformer
    of a folder, or of a snapshot that keeps it in a subfolder, must be there (its config.json)."""
    if local:
        if not os.path.isfile(os.path.join(target, MODULES_FILE)):
            return None
        pipe = read_pipeline(target)
        if not os.path.isfile(os.path.join(pipe.transformer_folder, "config.json")):
            raise PolyauditError(f"the Transformer module of {os.path.join(target, MODULES_FILE)!r} is in folder "
                                 f"{pipe.transformer or '.'!r}, which has no config.json; {_FIX}")
        return pipe
    folder = _snapshot_folder(target, revision, cache_dir, filename=MODULES_FILE)
    if folder is None:
        return None
    commit = _COMMIT.search(folder.replace(os.sep, "/"))
    pipe = read_pipeline(folder, revision=commit.group(1) if commit else revision)
    if pipe.transformer and not os.path.isfile(os.path.join(pipe.transformer_folder, "config.json")):
        raise PolyauditError(f"cannot load {target!r}: its transformer ({pipe.transformer}/) is not in the local "
                             "Hugging Face cache; download the whole repository once with network access, "
                             "or pass a local folder")
    return pipe

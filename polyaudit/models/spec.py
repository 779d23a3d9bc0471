"""Model specs: the string a user passes to `--model`, parsed into what to load.

zoo:mlp-digits?dropout=0.4&seed=1     the built-in zoo (name + parameters)
mypkg.models:make_net                 a factory: a callable returning a module (and a probe)
mypkg.models:make_cnn?pos=all         ... a CNN read at every spatial position (pos=center, all, I,J)
./ckpt  ../ckpt  /abs/ckpt  ~/ckpt    a local folder written by save_pretrained
gpt2  EleutherAI/pythia-70m           a Hugging Face hub id
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from polyaudit.errors import PolyauditError

SpecKind = Literal["hub", "local", "zoo", "factory"]

_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_HUB = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_ZOO_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PATH_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")
_HELP = (
    "use a hub id (gpt2), a local folder (./ckpt), zoo:NAME (zoo:mlp-digits) "
    "or module.path:callable"
)


@dataclass(frozen=True)
class ModelSpec:
    """What a spec string names. `target` is the hub id, the absolute folder, the zoo name or the
    `module:callable`; `params` holds the zoo's `?key=value` pairs (as strings)."""

    kind: SpecKind
    target: str
    params: dict[str, str] = field(default_factory=dict)


def _zoo(s: str) -> ModelSpec:
    name, _, query = s[len("zoo:") :].partition("?")
    if not _ZOO_NAME.match(name):
        raise PolyauditError(
            f"bad zoo spec {s!r}: expected zoo:NAME[?key=value&...], e.g. zoo:mlp-digits"
        )
    params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or not key or not value:
            raise PolyauditError(
                f"bad zoo parameter {pair!r} in {s!r}: write key=value pairs joined by &, "
                "e.g. zoo:mlp-digits?dropout=0.4&seed=1"
            )
        if key in params:
            raise PolyauditError(f"zoo parameter {key!r} given twice in {s!r}: give it once")
        params[key] = value
    return ModelSpec("zoo", name, params)


FACTORY_PARAMS = ("pos",)  # how a factory's model is read (pos: a CNN's position selector)


def _factory_params(s: str, query: str) -> dict[str, str]:
    """`module:callable?pos=all`: the only factory parameter is a CNN's position selector."""
    params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key not in FACTORY_PARAMS or not eq or not value or key in params:
            raise PolyauditError(
                f"bad factory parameter {pair!r} in {s!r}: a factory takes pos=center, pos=all or pos=I,J "
                "(a convolutional model's position selector), once"
            )
        params[key] = value
    return params


def parse_spec(s: str) -> ModelSpec:
    """Parse a `--model` spec; an unparseable one is a one-line PolyauditError."""
    s = s.strip()
    if s.startswith("zoo:"):
        return _zoo(s)
    if s and (os.path.isdir(s) or s.startswith(_PATH_PREFIXES)):
        path = os.path.abspath(os.path.expanduser(s))
        if not os.path.exists(path):
            raise PolyauditError(f"model folder {s!r} does not exist: check the path, or {_HELP}")
        if not os.path.isdir(path):
            raise PolyauditError(
                f"model path {s!r} is a file, not a folder: pass the folder holding config.json"
            )
        return ModelSpec("local", path)
    head, query_mark, query = s.partition("?")
    if _FACTORY.match(head) and not os.path.exists(s):
        return ModelSpec("factory", head, _factory_params(s, query) if query_mark else {})
    if _HUB.match(s) and ".." not in s:
        return ModelSpec("hub", s)
    raise PolyauditError(f"unknown model spec {s!r}: {_HELP}")

"""Pretrained weights by name: ``create_model("resnet50", pretrained=True)``.

Every registered model may have weights entries (:class:`PretrainedWeights`, the rows of
``weights/pretrained_table.py``), each a published file of torchvision or timm by its URL, with
its SHA-256 (or the prefix the file name carries), the key layout it is written in (a
``KeyMap.source`` of ``weights/keymaps``), the preprocessing the weights were trained and
evaluated with, and the source's published accuracy. A tag names an entry within a model
(``tv_in1k``: torchvision's ImageNet-1K weights V1, ``tv2_in1k``: V2, ``timm_a1_in1k``: timm's
``resnet50.a1_in1k``, ...); ``pretrained=True`` takes the model's default entry (torchvision's
``DEFAULT`` where torchvision has the model).

A model built with weights carries their preprocessing in ``model.default_cfg["preprocess"]``
(and its ``mean``, ``std`` and ``input_size`` become the weights'), and what they are in
``default_cfg["pretrained"]``.

The registry (models/) cannot import this package (DESIGN's import order: models -> weights),
so ``create_model(..., pretrained=...)`` reaches :func:`create_pretrained` through a hook this
module installs at import (``models._registry.set_pretrained_loader``): one ``create_model`` for
the library, the trainer and the tasks, instead of a second wrapper with another signature.
"""
from __future__ import annotations

import fnmatch
import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from . import hub
from .keymaps import KEYMAPS

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class WeightsPreprocess:
    """What an input goes through before a model with these weights sees it, as the source
    evaluates them (torchvision's ``weights.transforms()``, timm's pretrained config).

    Attributes:
        resize: an int resizes the shorter side to it (the aspect ratio kept); a tuple resizes
            to exactly that size; None does not resize (detectors resize inside the model).
        crop: the centre crop after resizing (one size per axis); None: no crop.
        mean, std: per-channel normalisation of [0, 1] input, (x - mean) / std; None: the model
            normalises inside (torchvision's detectors).
        interpolation: "bilinear", "bicubic" or "nearest" (antialiased when shrinking, as
            torchvision's resize of PIL images and tensors).
    """

    resize: int | tuple[int, ...] | None = None
    crop: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std are given together or not at all")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        parts = []
        if isinstance(self.resize, int):
            parts.append(f"resize shorter side to {self.resize} ({self.interpolation})")
        elif self.resize is not None:
            parts.append(f"resize to {'x'.join(map(str, self.resize))} ({self.interpolation})")
        if self.crop is not None:
            parts.append(f"centre crop {'x'.join(map(str, self.crop))}")
        if self.mean is None:
            parts.append("the model normalises and resizes inside")
        else:
            parts.append(f"mean {list(self.mean)}, std {list(self.std)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file for one registered model.

    Attributes:
        model: the convnet model name.
        tag: the entry's name within the model ("tv_in1k", "timm_a1_in1k", ...).
        url: where the source publishes the file.
        layout: the ``KeyMap.source`` whose renaming loads the file ("convnet": none needed).
        preprocess: the preprocessing that goes with the weights.
        num_classes: the classifier's outputs in the file.
        dataset: the data set the metrics are measured on (the source's name for it).
        metrics: the source's published figures (acc@1, acc@5, box_map, miou, ...).
        source: where the entry comes from (library, version, then the enum member or the
            pretrained config's name as the last word).
        metrics_source: where the figures come from, and how they were measured where that
            differs from ``preprocess``.
        sha256: the expected SHA-256, whole (64 hex digits) or a prefix ("": none known).
        sha256_source: where the whole digest comes from (a prefix comes from the file name).
        size: the exact size in bytes, where known.
        max_size: an upper bound from the source's rounded size, where only that is known.
        num_params: the source's parameter count.
        file_name: the file's path in the cache and under a mirror (default: the URL's name).
        overrides: create_model overrides the weights need (e.g. a larger ViT input).
        default: the entry ``pretrained=True`` takes.
        license: the weights' license, where the source states it.
    """

    model: str
    tag: str
    url: str
    layout: str
    preprocess: WeightsPreprocess
    num_classes: int
    dataset: str
    metrics: Mapping[str, float]
    source: str
    metrics_source: str = ""
    sha256: str = ""
    sha256_source: str = ""
    size: int | None = None
    max_size: int | None = None
    num_params: int | None = None
    file_name: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False
    license: str = ""

    @property
    def name(self) -> str:
        """``model.tag``, e.g. ``resnet50.tv2_in1k``."""
        return f"{self.model}.{self.tag}"

    @property
    def file(self) -> str:
        """The path in the cache and under a mirror."""
        return self.file_name or Path(self.url.split("?")[0]).name

    @property
    def hash_kind(self) -> str:
        """How the file is verified: "sha256" (a whole digest stored here), "prefix" (the file
        name's SHA-256 prefix), "hub" (the SHA-256 the Hugging Face Hub sends with the file) or
        "none"."""
        if self.sha256:
            return "sha256" if len(self.sha256) == 64 else "prefix"
        return "hub" if self.url.startswith("https://huggingface.co/") else "none"

    def fetch(self, progress: bool = True) -> Path:
        """The verified file in the cache, downloaded first if needed (:func:`hub.fetch`)."""
        return hub.fetch(self.url, self.file, sha256=self.sha256, size=self.size, max_size=self.max_size,
                         progress=progress, what=self.name)

    def summary(self) -> dict[str, Any]:
        """What ``default_cfg["pretrained"]`` records."""
        return {"name": self.name, "url": self.url, "file": self.file, "sha256": self.sha256 or None,
                "hash": self.hash_kind, "source": self.source, "dataset": self.dataset,
                "metrics": dict(self.metrics), "metrics_source": self.metrics_source,
                "num_classes": self.num_classes, "layout": self.layout}


# model -> tag -> entry, in registration order.
WEIGHTS: dict[str, dict[str, PretrainedWeights]] = {}


def register_weights(entry: PretrainedWeights) -> PretrainedWeights:
    """Add a weights entry. A second entry of the same name, or a second default, raises."""
    tags = WEIGHTS.setdefault(entry.model, {})
    if entry.tag in tags:
        raise ValueError(f"weights {entry.name} are already registered")
    if entry.default and any(e.default for e in tags.values()):
        raise ValueError(f"{entry.model} already has a default weights entry")
    tags[entry.tag] = entry
    return entry


def _ensure_table() -> None:
    from . import pretrained_table  # noqa: F401  (registers the rows)


def list_pretrained(pattern: str = "*") -> list[str]:
    """Names ``model.tag`` of every weights entry whose model matches ``pattern``."""
    _ensure_table()
    return [e.name for model, tags in sorted(WEIGHTS.items()) if fnmatch.fnmatch(model, pattern)
            for e in tags.values()]


def has_pretrained(model: str) -> bool:
    _ensure_table()
    return bool(WEIGHTS.get(model))


def get_weights(model: str, tag: str | bool | None = True) -> PretrainedWeights:
    """The weights entry ``tag`` of ``model``; True, None or "default" mean the default entry.

    Raises:
        ValueError: the model has no weights, or no entry of that tag (the tags are listed).
    """
    _ensure_table()
    tags = WEIGHTS.get(model)
    if not tags:
        close = difflib.get_close_matches(model, WEIGHTS, n=3, cutoff=0.6)
        hint = f"; weights exist for {', '.join(close)}" if close else "; see `convnet models --pretrained`"
        raise ValueError(f"no pretrained weights for {model!r}{hint}")
    if tag is True or tag is None or tag == "default":
        return next((e for e in tags.values() if e.default), next(iter(tags.values())))
    if not isinstance(tag, str) or tag not in tags:
        raise ValueError(f"{model} has no pretrained weights {tag!r}; tags: {', '.join(tags)}")
    return tags[tag]


def parse_spec(text: str) -> str | None:
    """The tag of a ``pretrained`` or ``pretrained:TAG`` string ("default" for the first), or
    None when ``text`` is not such a string."""
    if text == "pretrained":
        return "default"
    if isinstance(text, str) and text.startswith("pretrained:"):
        return text.split(":", 1)[1] or "default"
    return None


# ----------------------------------------------------------------------------- loading
def load_weights(model: nn.Module, entry: PretrainedWeights, exclude: tuple[str, ...] = (),
                 progress: bool = True) -> nn.Module:
    """Fetch ``entry`` (verified, cached), convert it from its layout and load it into
    ``model``; the model's ``default_cfg`` then carries the weights' preprocessing.

    Args:
        model: a model of ``entry.model``'s architecture (``create_model(entry.model, ...)``).
        entry: the weights.
        exclude: key prefixes (convnet's layout) not loaded, e.g. ``("head.",)`` for a new head.
        progress: a progress bar while downloading.
    """
    from .checkpoint import load_state, load_tensors

    path = entry.fetch(progress=progress)
    state = load_tensors(path)
    if entry.layout != "convnet":
        keymap = next((k for k in KEYMAPS if k.source == entry.layout), None)
        if keymap is None:
            raise ValueError(f"{entry.name}: no key map reads the layout {entry.layout!r}")
        try:
            state = keymap.apply(state, model)
        except (ValueError, KeyError, RuntimeError) as e:
            raise ValueError(f"{path} ({entry.name}): not in the layout {entry.layout} ({e})") from None
    load_state(model, state, f"{path} ({entry.name})", exclude)
    attach_preprocess(model, entry)
    return model


def attach_preprocess(model: nn.Module, entry: PretrainedWeights) -> nn.Module:
    """Record the weights and their preprocessing in ``model.default_cfg``."""
    cfg = dict(getattr(model, "default_cfg", {}) or {})
    pre = entry.preprocess
    cfg["pretrained"] = entry.summary()
    cfg["preprocess"] = pre.to_dict()
    if pre.mean is not None:
        cfg["mean"], cfg["std"] = tuple(pre.mean), tuple(pre.std)
    size = pre.crop or (pre.resize if isinstance(pre.resize, tuple) else None)
    if size is not None and cfg.get("input_size"):
        in_size = tuple(cfg["input_size"])
        # (C, H, W), or (C, T, H, W) for clips: the crop sets the last axes.
        cfg["input_size"] = in_size[:len(in_size) - len(size)] + tuple(size)
    model.default_cfg = cfg
    return model


def create_pretrained(name: str, pretrained: bool | str, *, spatial_dims: int | None = None,
                      in_channels: int | None = None, num_classes: int | None = None, progress: bool = True,
                      **overrides: Any) -> nn.Module:
    """``create_model(name, pretrained=...)``: build the architecture the weights need and load
    them. ``num_classes`` other than the weights' keeps a new, randomly initialised classifier
    (``head.``) and loads the rest (transfer learning).

    Raises:
        ValueError: no such weights, or a configuration they cannot fill (other input channels,
            dimensions, or classes of a model whose head is not ``head.``).
    """
    from ..models import create_model, get_entry

    entry = get_weights(name, pretrained)
    model_entry = get_entry(name)
    dims = model_entry.default_dims()
    if spatial_dims is not None and spatial_dims != dims:
        raise ValueError(f"{entry.name} are {dims}-D weights; spatial_dims={spatial_dims} cannot take them "
                         "(convnet.models.inflate turns a 2-D model into a 3-D one)")
    if in_channels is not None and in_channels != model_entry.in_channels:
        raise ValueError(f"{entry.name} expect {model_entry.in_channels} input channels, got in_channels={in_channels}")
    exclude: tuple[str, ...] = ()
    if num_classes is None:
        num_classes = entry.num_classes
    elif num_classes != entry.num_classes:
        if model_entry.task != "classify":
            raise ValueError(f"{entry.name} have {entry.num_classes} classes; a {model_entry.task} model with "
                             f"num_classes={num_classes} needs its own head (train it with --init pretrained)")
        exclude = ("head.",)
    kwargs = {**entry.overrides, **overrides}
    model = create_model(name, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes, **kwargs)
    return load_weights(model, entry, exclude=exclude, progress=progress)


def load_named(model: nn.Module, tag: str, exclude: tuple[str, ...] = (), progress: bool = True) -> nn.Module:
    """``load_pretrained(model, "pretrained[:TAG]")``: the table's weights of the model's own
    architecture (``model.default_cfg["name"]``)."""
    name = (getattr(model, "default_cfg", None) or {}).get("name")
    if not name:
        raise ValueError("'pretrained' weights need a model made by create_model (its default_cfg names it)")
    entry = get_weights(name, tag)
    built = getattr(model, "model_config", {}) or {}
    from ..models import get_entry

    channels = get_entry(name).in_channels
    if built.get("in_channels", channels) != channels:
        raise ValueError(f"{entry.name} take {channels} input channels, the model has {built['in_channels']} "
                         f"(for images: data.channels={channels})")
    have = built.get("overrides") or {}
    needed = {k: v for k, v in entry.overrides.items() if _plain(have.get(k)) != _plain(v)}
    if needed:
        raise ValueError(f"{entry.name} need a model built with {needed} "
                         f"({' '.join(f'model.overrides.{k}={v}' for k, v in needed.items())})")
    return load_weights(model, entry, exclude=exclude, progress=progress)


def _plain(value: Any) -> Any:
    """Tuples as lists (config.json's form of a model's overrides), to compare the two."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def init_preprocess(model: str, init: str) -> dict[str, Any] | None:
    """The preprocessing of the weights a ``transfer.init`` value names (``pretrained`` or
    ``pretrained:TAG``) for ``model``, as :meth:`WeightsPreprocess.to_dict`; None when ``init``
    is a path, a URL or empty (their preprocessing is not known here)."""
    tag = parse_spec(init) if init else None
    if tag is None:
        return None
    return get_weights(model, tag).preprocess.to_dict()


def _install_hook() -> None:
    from ..models import _registry

    _registry.set_pretrained_loader(create_pretrained)


_install_hook()

__all__ = ["INTERPOLATIONS", "PretrainedWeights", "WEIGHTS", "WeightsPreprocess", "attach_preprocess",
           "create_pretrained", "get_weights", "has_pretrained", "init_preprocess", "list_pretrained", "load_named",
           "load_weights", "parse_spec", "register_weights"]

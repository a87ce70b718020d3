"""The model registry: every architecture by snake_case name, over frozen dataclass specs.

A family file declares its variants as rows of a spec table and registers each row once::

    register("resnet18", ResNet, RESNET_SPECS["resnet18"], family="resnet", paper=..., year=2016)

``create_model`` then builds any variant in 1, 2 or 3 spatial dims; keyword overrides replace
fields of the spec (``create_model("resnet18", layers=(1, 1, 1, 1))``) or go to the model's
constructor (``drop_rate=0.2``).
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelEntry:
    """One registered variant: how to build it and what the paper says about it."""

    name: str
    cls: Callable[..., nn.Module]
    spec: Any
    family: str
    paper: str
    year: int
    in_channels: int = 3
    num_classes: int = 1000
    input_size: int | tuple[int, ...] = 224  # per spatial axis (or one per axis), the paper's training resolution
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    fixed_input_size: bool = False
    spatial_dims: tuple[int, ...] = (1, 2, 3)
    # What create_model builds when not told: None means 2 where supported, else the first listed
    # (a sequence model is 1-D, a video model 3-D).
    default_spatial_dims: int | None = None
    reference_params: int | None = None  # the figure from the paper or reference implementation
    reference: str = ""  # where reference_params comes from
    task: str = "classify"  # the task the model's output serves (convnet.tasks): classify, segment, detect, ...
    extra: dict[str, Any] = field(default_factory=dict)

    def default_dims(self) -> int:
        """The spatial dims create_model builds when not told."""
        if self.default_spatial_dims is not None:
            return self.default_spatial_dims
        return 2 if 2 in self.spatial_dims else self.spatial_dims[0]

    def input_shape(self, spatial_dims: int) -> tuple[int, ...]:
        """The paper's input extent per spatial axis."""
        if isinstance(self.input_size, int):
            return (self.input_size,) * spatial_dims
        return tuple(self.input_size)


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, cls: Callable[..., nn.Module], spec: Any, **meta: Any) -> ModelEntry:
    """Register a variant. A second registration of the same name raises."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (family {_REGISTRY[name].family!r})")
    if name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"model names are snake_case, got {name!r}")
    if spec is not None and not (dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen):
        raise TypeError(f"spec of {name!r} must be a frozen dataclass instance")
    entry = ModelEntry(name=name, cls=cls, spec=spec, **meta)
    _REGISTRY[name] = entry
    return entry


def _ensure_loaded() -> None:
    # Family modules register themselves on import; importing the package imports them all.
    from . import _families  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    """The entry of a registered model; an unknown name suggests close ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `convnet models`"
        raise ValueError(f"unknown model {name!r}{hint}") from None


def list_models(pattern: str = "*", family: str | None = None, task: str | None = None) -> list[str]:
    """Registered names matching a shell-style pattern (``"resnet*"``), of one family and one
    task (``"classify"``, ``"segment"``, ...) when given, sorted."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)
                  and (task is None or e.task == task))


# create_model(..., pretrained=...) is served by convnet.weights.pretrained, which installs its
# loader here when imported (importing convnet imports it). models/ never imports weights/
# (DESIGN's import order), so the dependency runs through this hook instead.
_PRETRAINED_LOADER: Callable[..., nn.Module] | None = None


def set_pretrained_loader(loader: Callable[..., nn.Module] | None) -> None:
    """Install what builds a model with pretrained weights: ``loader(name, pretrained, *,
    spatial_dims, in_channels, num_classes, **overrides)`` (convnet.weights does, at import)."""
    global _PRETRAINED_LOADER
    _PRETRAINED_LOADER = loader


def _constructor_params(cls: Callable[..., nn.Module]) -> set[str]:
    return set(inspect.signature(cls).parameters) - {"self", "spec"}


def create_model(
    name: str,
    *,
    spatial_dims: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    pretrained: bool | str = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a registered name (``list_models()``).
        spatial_dims: 1 (signals), 2 (images) or 3 (volumes, clips); None means the entry's
            default (2 for image models, 1 for sequence models, 3 for video models).
        in_channels: input channels; None means the paper's (3 for ImageNet models, 1 for LeNet).
        num_classes: outputs; None means the paper's (1000 for ImageNet models, 10 for LeNet),
            or with ``pretrained`` the weights' (another number keeps a new classifier).
        pretrained: True loads the model's default published weights, a string the weights of
            that tag (``"tv_in1k"``; ``convnet models --pretrained`` lists them), downloaded
            once into the cache and verified (convnet.weights.pretrained); the model's
            ``default_cfg["preprocess"]`` then says how inputs must be prepared for them.
        **overrides: fields of the variant's spec, or keyword arguments of the model class.

    Raises:
        ValueError: unknown name, unsupported spatial_dims, or an unknown override.
    """
    if pretrained:
        if _PRETRAINED_LOADER is None:
            raise RuntimeError("pretrained weights need convnet.weights imported (import convnet does it)")
        return _PRETRAINED_LOADER(name, pretrained, spatial_dims=spatial_dims, in_channels=in_channels,
                                  num_classes=num_classes, **overrides)
    entry = get_entry(name)
    if spatial_dims is None:
        spatial_dims = entry.default_dims()
    if spatial_dims not in entry.spatial_dims:
        raise ValueError(f"{name} supports spatial_dims {entry.spatial_dims}, got {spatial_dims!r}")
    spec_fields = {f.name for f in dataclasses.fields(entry.spec)} if entry.spec is not None else set()
    ctor = _constructor_params(entry.cls)
    unknown = sorted(set(overrides) - spec_fields - ctor)
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for {name}; spec fields: {sorted(spec_fields)}, "
            f"model arguments: {sorted(ctor - {'spatial_dims', 'in_channels', 'num_classes'})}"
        )
    spec_over = {k: v for k, v in overrides.items() if k in spec_fields}
    kwargs = {k: v for k, v in overrides.items() if k not in spec_fields}
    spec = dataclasses.replace(entry.spec, **spec_over) if spec_over else entry.spec
    in_channels = entry.in_channels if in_channels is None else in_channels
    num_classes = entry.num_classes if num_classes is None else num_classes
    model = entry.cls(spec=spec, spatial_dims=spatial_dims, in_channels=in_channels,
                      num_classes=num_classes, **kwargs)
    model.default_cfg = {
        "name": name,
        "family": entry.family,
        "input_size": (in_channels,) + entry.input_shape(spatial_dims),
        "fixed_input_size": entry.fixed_input_size,
        "mean": entry.mean if in_channels == len(entry.mean) else (entry.mean[0],) * in_channels,
        "std": entry.std if in_channels == len(entry.std) else (entry.std[0],) * in_channels,
        "paper": entry.paper,
        "year": entry.year,
        "cam_layer": getattr(model, "cam_layer", None),
    }
    # What it takes to build this exact model again (saved next to its weights).
    model.model_config = {"name": name, "spatial_dims": spatial_dims, "in_channels": in_channels,
                          "num_classes": num_classes, "overrides": _jsonable(overrides)}
    return model


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"override value {value!r} cannot be saved in config.json; use a name instead")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


_PARAM_CACHE: dict[str, int] = {}


def model_info(name: str) -> dict[str, Any]:
    """Paper, year, family, trainable parameters at the default config (counted by building the
    model on the meta device, so even the largest costs no memory), input size, dims."""
    entry = get_entry(name)
    if name not in _PARAM_CACHE:
        with torch.device("meta"):
            _PARAM_CACHE[name] = count_parameters(create_model(name))
    return {
        "name": name,
        "family": entry.family,
        "paper": entry.paper,
        "year": entry.year,
        "params": _PARAM_CACHE[name],
        "reference_params": entry.reference_params,
        "reference": entry.reference,
        "in_channels": entry.in_channels,
        "num_classes": entry.num_classes,
        "input_size": entry.input_size,
        "spatial_dims": entry.spatial_dims,
        "task": entry.task,
    }

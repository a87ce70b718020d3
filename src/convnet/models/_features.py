"""Multi-scale features from any registered classifier: the encoder of every dense model.

A classifier describes its stages in ``feature_info`` (channels, reduction, module). The
:class:`FeatureExtractor` returns the outputs of those modules, shallow to deep, as a list of
(B, C_i, *S_i) tensors: what U-Net decoders, FPNs and segmentation heads are built from.

How it runs only what it needs: the classifier's ``forward_features`` is traced with ``torch.fx``,
stepping only into the modules that contain a tapped stage (the "spine": the model itself, its
``stages`` list, a stage holding a tapped block). Every other module is one opaque call, so the
trace never sees the inside of a block, where data-dependent Python would stop it. The graph's
output becomes the tapped values and dead-code elimination drops everything after the deepest
tapped stage (the classifier head was never called in ``forward_features``), so the extractor
holds and runs only the layers it uses, as torchvision's ``create_feature_extractor`` does. The
result is an ordinary graph of module calls, which ``torch.export`` and ONNX take as they are.

A family whose ``forward_features`` cannot be traced even at that level (ViT reshapes its token
grid with ``*grid``) falls back to forward hooks on the tapped modules and runs the whole
``forward_features``; its head is removed. The hooks only record outputs, so export still sees one
straight-line program.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx as fx
from torch import nn

from ._base import FeatureInfo


class _SpineTracer(fx.Tracer):
    """Traces into the named containers only; every other module is a leaf (one call node)."""

    def __init__(self, spine: set[str]):
        super().__init__()
        self.spine = spine

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.spine


class _ForwardFeatures(nn.Module):
    """A view of a classifier whose ``forward`` is its ``forward_features``: it shares the
    classifier's children, parameters and buffers (same objects, same names), so the traced
    graph names modules exactly as the classifier does."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self._modules = backbone._modules
        self._parameters = backbone._parameters
        self._buffers = backbone._buffers
        object.__setattr__(self, "_forward_features", backbone.forward_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_features(x)


def _ancestors(names: Sequence[str]) -> set[str]:
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts)))
    return out


def _trace(backbone: nn.Module, taps: list[str]) -> fx.GraphModule | None:
    """A GraphModule computing the outputs of ``taps`` (in order) and nothing after them, or
    None when the spine cannot be traced or a tap is not one module call in it."""
    spine = _ancestors(taps)
    if spine & set(taps):  # a tapped module that contains another one is not a single call
        return None
    root = _ForwardFeatures(backbone)
    try:
        graph = _SpineTracer(spine).trace(root)
    except Exception:  # noqa: BLE001  (any tracing failure means: use hooks)
        return None
    calls: dict[str, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in taps:
            calls[node.target] = node  # a module called twice: its last call is the stage output
    if set(calls) != set(taps):
        return None
    output = next(n for n in graph.nodes if n.op == "output")
    with graph.inserting_before(output):
        graph.output(tuple(calls[t] for t in taps))
    graph.erase_node(output)
    module = fx.GraphModule(root, graph, class_name="FeatureGraph")
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return module


_OUTPUT = "_feature_extractor_output"


def _record_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
    # The output is kept on the tapped module itself (not in a closure over the extractor), so a
    # deep copy of the extractor (export copies the model) records into its own modules.
    module.__dict__[_OUTPUT] = output


class FeatureExtractor(nn.Module):
    """The feature maps of a classifier's stages, shallow to deep.

    Args:
        backbone: a built classifier with ``feature_info`` (any registered family, any dims). The
            extractor takes it over: its layers are shared, not copied, and its head is dropped.
        out_indices: which entries of ``backbone.feature_info`` to return (negative indices
            count from the deepest); None for all.
        feature_info: explicit taps instead of ``out_indices``: entries naming modules of the
            backbone with their channels and reduction (torchvision's MobileNetV3 segmentation
            models tap the first block of a stage, not its end).

    ``forward(x)`` returns a list of (B, C_i, *S_i) tensors; ``feature_info`` describes them,
    with module names relative to this extractor (``body.<backbone name>``); ``traced`` says
    whether the extractor runs a pruned graph (True) or the whole trunk with hooks (False).
    """

    def __init__(self, backbone: nn.Module, out_indices: Sequence[int] | None = None,
                 feature_info: Sequence[FeatureInfo] | None = None):
        super().__init__()
        if feature_info is None:
            info = list(getattr(backbone, "feature_info", None) or [])
            if not info:
                raise ValueError(f"{type(backbone).__name__} has no feature_info to extract features from")
            indices = range(len(info)) if out_indices is None else out_indices
            chosen = []
            for i in indices:
                if not -len(info) <= i < len(info):
                    raise ValueError(f"out_indices {list(indices)}: {i} is out of range for the "
                                     f"{len(info)} stages of {type(backbone).__name__}")
                chosen.append(info[i])
            feature_info = chosen
        feature_info = list(feature_info)
        if not feature_info:
            raise ValueError("FeatureExtractor needs at least one stage to return")
        modules = dict(backbone.named_modules())
        taps = [f.module for f in feature_info]
        unknown = [t for t in taps if t not in modules]
        if unknown:
            raise ValueError(f"feature modules {unknown} are not modules of {type(backbone).__name__}")
        if len(set(taps)) != len(taps):
            raise ValueError(f"feature modules {taps} name a module twice")
        self.spatial_dims = getattr(backbone, "spatial_dims", None)
        self.in_channels = getattr(backbone, "in_channels", None)
        self.taps = taps
        graph = _trace(backbone, taps)
        self.traced = graph is not None
        if graph is not None:
            self.body = graph
        else:
            if hasattr(backbone, "head"):
                backbone.head = nn.Identity()  # forward_features never calls it; its weights are dead
            self.body = backbone
            for name in taps:
                modules[name].register_forward_hook(_record_output)
        self.feature_info = [FeatureInfo(f.channels, f.reduction, f"body.{f.module}") for f in feature_info]

    def load_from_classifier(self, classifier: nn.Module) -> FeatureExtractor:
        """Copy the weights of a classifier of the same architecture (e.g. one loaded with
        ``convnet.load_pretrained`` from an ImageNet checkpoint) into the extractor: its layers
        keep the classifier's names, so every tensor the extractor holds is found by name and the
        classifier's unused layers (head, later stages) are left out.

        Raises:
            ValueError: a tensor the extractor needs is missing, or has another shape.
        """
        theirs = classifier.state_dict()
        ours = self.body.state_dict()
        missing = sorted(k for k in ours if k not in theirs)
        shapes = [f"{k}: {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
                  if k in theirs and theirs[k].shape != v.shape]
        if missing or shapes:
            raise ValueError(f"{type(classifier).__name__} does not fit this feature extractor: "
                             f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}; shape mismatches {shapes[:5]}")
        self.body.load_state_dict({k: theirs[k] for k in ours}, strict=True)
        return self

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [f.reduction for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.traced:
            return list(self.body(x))
        self.body.forward_features(x)
        out = []
        for name in self.taps:
            module = self.body.get_submodule(name)
            out.append(module.__dict__.pop(_OUTPUT))
        return out


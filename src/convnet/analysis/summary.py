"""A per-layer table of a model, like Keras' model.summary() or torchinfo.

One forward pass with hooks records, for every layer that computes something (leaf modules, and
modules that own parameters directly), its output shape, its parameters and the multiply-
accumulates of convolutions and linear layers.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .. import layers as L


@dataclass
class LayerRow:
    name: str  # module path, e.g. "stages.0.blocks.1.conv2.conv"
    type: str
    output_shape: tuple[int, ...]  # without the batch axis
    params: int
    trainable: int
    macs: int  # per sample; 0 for layers whose MACs are not counted


@dataclass
class ModelSummary:
    model: str
    input_shape: tuple[int, ...]  # (C, *S), without the batch axis
    output_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0

    @property
    def total_flops(self) -> int:
        """FLOPs counted as 2 x MACs (one multiply and one add)."""
        return 2 * self.total_macs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        headers = ("Layer (type)", "Output shape", "Params", "MACs")
        lines = [(f"{r.name} ({r.type})", str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}")
                 for r in self.rows]
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(headers)]
        rule = "-" * (sum(widths) + 3 * (len(widths) - 1))

        def fmt(cols: Sequence[str]) -> str:
            return "   ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))

        out = [f"{self.model}: input {list(self.input_shape)} -> output {list(self.output_shape)}",
               rule, fmt(headers), rule, *(fmt(l) for l in lines), rule,
               f"Total params: {self.total_params:,}",
               f"Trainable params: {self.trainable_params:,}",
               f"Non-trainable params: {self.total_params - self.trainable_params:,}",
               f"MACs (conv + linear, per sample): {self.total_macs:,} ({self.total_macs / 1e9:.3f} G)",
               f"FLOPs (2 x MACs): {self.total_flops:,}"]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates per sample of one layer's forward."""
    per_sample = output[0].numel() if output.ndim > 0 else 0
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        k = module.weight[0].numel()  # (in / groups) * prod(kernel)
        return per_sample * k
    if isinstance(module, L.ConnectionTableConv):
        spatial = output[0, 0].numel()
        return module.weight.numel() * spatial
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def summary(model: nn.Module, input_size: Sequence[int] | None = None, *, batch_size: int = 1,
            device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> ModelSummary:
    """Run one forward pass on zeros and tabulate every layer.

    Args:
        model: any nn.Module taking one (B, C, *S) tensor.
        input_size: (C, *S) without the batch; defaults to ``model.default_cfg["input_size"]``.
        batch_size: the batch of the probing pass (BatchNorm in eval mode needs none).
    """
    if input_size is None:
        input_size = getattr(model, "default_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError("summary() needs input_size=(C, *S) for a model without default_cfg")
    input_size = tuple(int(s) for s in input_size)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows: list[LayerRow] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            own = list(module.parameters(recurse=False))
            rows.append(LayerRow(name=name, type=type(module).__name__, output_shape=tuple(out.shape[1:]),
                                 params=sum(p.numel() for p in own),
                                 trainable=sum(p.numel() for p in own if p.requires_grad),
                                 macs=_macs(module, out)))
        return fn

    for name, module in model.named_modules():
        is_leaf = next(module.children(), None) is None
        owns_params = next(module.parameters(recurse=False), None) is not None
        if name and (is_leaf or owns_params):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((batch_size, *input_size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    name = getattr(model, "default_cfg", {}).get("name", type(model).__name__)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(model=name, input_shape=input_size, output_shape=tuple(out.shape[1:]), rows=rows,
                        total_params=total, trainable_params=trainable, total_macs=sum(r.macs for r in rows))

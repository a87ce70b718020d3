"""An exponential moving average of a model's weights (Polyak & Juditsky 1992; used for ImageNet
training by Szegedy et al. 2016, §10 "Inception-v3", and by EfficientNet/ConvNeXt recipes).

After every optimiser step ``update(model)`` sets, for each parameter,
``ema <- d * ema + (1 - d) * w``, so after k updates from the initial copy ``w_0``::

    ema_k = d^k * w_0 + sum_{i=1..k} (1 - d) * d^(k - i) * w_i

Evaluating ``ema.module`` instead of the model usually gives a better and smoother validation
curve at no training cost.

Buffers (BatchNorm running mean/var, ``num_batches_tracked``) are *copied* from the model, not
averaged: the running statistics are already an exponential average over recent batches (torch's
BN momentum 0.1), and averaging them again would make them lag further behind the activations they
normalise; integer buffers cannot be averaged at all. The averaged weights and the copied
statistics then differ by the drift of the last ~1/(1-d) steps, small once training settles; a
caller who wants statistics that match the averaged weights exactly can re-estimate them with a
pass over training data in train mode (as SWA's ``update_bn`` does).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

_PREFIX = "module."


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / DataParallel and ``torch.compile``
    wrappers, so that parameter names match the EMA copy's."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


class ModelEMA:
    """An EMA copy of ``model``: ``.module`` is a deep copy in eval mode with gradients off.

    Args:
        model: the model being trained (wrappers are unwrapped).
        decay: ``d`` in ``ema <- d * ema + (1 - d) * w``, in [0, 1].
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at the (n+1)-th update (n = updates done
            before it; TensorFlow's ExponentialMovingAverage ``num_updates`` rule, timm's ModelEma),
            so early averages are not dominated by the random initialisation. Off by default.
        device: keep the copy on this device (e.g. "cpu" to save accelerator memory); None keeps
            the model's device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False,
                 device: str | torch.device | None = None):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ModelEMA: decay must be in [0, 1], got {decay}")
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        if device is not None:
            self.module.to(device)
        self.module.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if self.warmup:
            return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average; copy its buffers."""
        d = self.current_decay()
        src = unwrap_model(model)
        ema_params = dict(self.module.named_parameters())
        ema_buffers = dict(self.module.named_buffers())
        src_params = dict(src.named_parameters())
        src_buffers = dict(src.named_buffers())
        if src_params.keys() != ema_params.keys() or src_buffers.keys() != ema_buffers.keys():
            missing = sorted((ema_params.keys() | ema_buffers.keys()) ^ (src_params.keys() | src_buffers.keys()))
            raise ValueError(f"ModelEMA.update: the model's tensors differ from the EMA copy's: {missing[:10]}")
        for name, e in ema_params.items():
            # lerp: e + (1 - d) * (w - e) = d * e + (1 - d) * w.
            e.lerp_(src_params[name].detach().to(device=e.device, dtype=e.dtype), 1.0 - d)
        for name, b in ema_buffers.items():
            b.copy_(src_buffers[name])
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only: the copy's state under ``module.`` and the update count."""
        sd = {_PREFIX + k: v.detach().clone() for k, v in self.module.state_dict().items()}
        sd["updates"] = torch.tensor(self.updates, dtype=torch.int64)
        return sd

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from ``state_dict`` output (strict: every key must match)."""
        if "updates" not in state:
            raise KeyError("ModelEMA.load_state_dict: no 'updates' entry (not a ModelEMA state dict)")
        stray = sorted(k for k in state if k != "updates" and not k.startswith(_PREFIX))
        if stray:
            raise KeyError(f"ModelEMA.load_state_dict: unexpected keys {stray[:10]}")
        module_sd = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
        self.module.load_state_dict(module_sd, strict=True)
        self.updates = int(state["updates"])

"""Class activation maps: Grad-CAM and Grad-CAM++, in 1, 2 and 3 spatial dims.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, eq. 1-2): the channel weights are the spatially averaged gradients of
the class score y^c with respect to the feature maps A^k of a layer,
``alpha_k = mean_ij dy^c / dA^k_ij``, and the map is ``ReLU(sum_k alpha_k A^k)``.

Grad-CAM++ (Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Improved Visual
Explanations for Deep Convolutional Networks", WACV 2018, eq. 19 with the exponential score
S^c = exp(y^c), whose higher derivatives are powers of the first): per position
``a^kc_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3)`` with ``g = dy^c / dA^k_ij`` (0 where g = 0), the
channel weights ``w_k = sum_ij a^kc_ij ReLU(g_ij)`` (the constant factor exp(y^c) of eq. 19 is
dropped: the map is normalised anyway), and the map is ``ReLU(sum_k w_k A^k)``.

The layer defaults to the model's ``default_cfg["cam_layer"]`` (each family names the last
spatial map before pooling); without one, the output of ``forward_features`` is used. Maps are
upsampled to the input size (linear, bilinear or trilinear interpolation) and divided by their
maximum per sample, so they lie in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.factory import linear_mode

__all__ = ["CAMResult", "cam_layer_name", "grad_cam", "grad_cam_pp_weights", "grad_cam_weights"]


@dataclass
class CAMResult:
    """A class activation map for every sample of a batch.

    Attributes:
        cam: (B, *S) at the input's spatial size, in [0, 1].
        raw: (B, *S') at the layer's size, before upsampling and normalisation.
        classes: (B,) the class each map explains.
        logits: (B, K) the model's output.
        layer: the module name whose output was used ("" for forward_features).
        activations: (B, C, *S') the layer's output.
        gradients: (B, C, *S') d score / d activations.
        weights: (B, C) the channel weights.
        method: "gradcam" or "gradcam++".
    """

    cam: torch.Tensor
    raw: torch.Tensor
    classes: torch.Tensor
    logits: torch.Tensor
    layer: str
    activations: torch.Tensor
    gradients: torch.Tensor
    weights: torch.Tensor
    method: str


def grad_cam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights: the spatial mean of the gradients, (B, C, *S) -> (B, C)."""
    return gradients.flatten(2).mean(2)


def grad_cam_pp_weights(activations: torch.Tensor, gradients: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018, eq. 19), (B, C, *S) -> (B, C)."""
    a, g = activations.flatten(2), gradients.flatten(2)
    g2, g3 = g.pow(2), g.pow(3)
    denom = 2 * g2 + a.sum(2, keepdim=True) * g3
    # Where the denominator vanishes so does g^2 (or the position has no gradient): alpha = 0.
    alpha = torch.where((g != 0) & (denom.abs() > eps), g2 / torch.where(denom.abs() > eps, denom, torch.ones_like(denom)),
                        torch.zeros_like(g))
    return (alpha * F.relu(g)).sum(2)


def cam_layer_name(model: nn.Module, layer: str | None = None) -> str:
    """The layer a CAM uses: ``layer``, else default_cfg's / the model's ``cam_layer``, else ""
    (the output of forward_features)."""
    if layer is not None:
        return layer
    cfg = getattr(model, "default_cfg", None) or {}
    return cfg.get("cam_layer") or getattr(model, "cam_layer", None) or ""


def _forward_with_activation(model: nn.Module, x: torch.Tensor, layer: str
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    if not layer:
        if not hasattr(model, "forward_features"):
            raise ValueError(f"{type(model).__name__} has no cam_layer and no forward_features; pass layer=")
        feats = model.forward_features(x)
        return model.forward_head(feats), feats
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no layer {layer!r}") from None
    store: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, args: object, out: object) -> torch.Tensor | None:
        t = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(t, torch.Tensor) or "a" in store:
            return None
        store["a"] = t
        # Hand later layers a copy: an in-place activation after this layer must not change
        # the activations kept here (the copy passes the gradient straight through).
        return t.clone() if t is out else None

    h = module.register_forward_hook(hook)
    try:
        # A detector's output is a list of boxes; its analysis_forward gives per-class evidence (B, K).
        logits = getattr(model, "analysis_forward", model)(x)
    finally:
        h.remove()
    if "a" not in store:
        raise ValueError(f"layer {layer!r} of {type(model).__name__} did not run in the forward pass")
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits, store["a"]


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    layer: str | None = None,
    method: str = "gradcam",
) -> CAMResult:
    """Grad-CAM (``method="gradcam"``) or Grad-CAM++ (``"gradcam++"``) for a batch.

    Args:
        model: a classifier (B, C, *S) -> (B, K), or a segmentation model (B, C, *S) -> (B, K, *S)
            whose class score is the sum of the class's logits over the input.
        x: the input batch, already preprocessed.
        target: the class to explain, one for all samples or one per sample; None takes each
            sample's top-1 class.
        layer: a module name (``model.get_submodule``); None uses ``cam_layer_name(model)``.
        method: "gradcam" or "gradcam++".
    """
    if method not in ("gradcam", "gradcam++"):
        raise ValueError(f"method must be 'gradcam' or 'gradcam++', got {method!r}")
    name = cam_layer_name(model, layer)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)  # a graph even for frozen weights
            logits, acts = _forward_with_activation(model, xg, name)
            if isinstance(logits, dict):  # torchvision's segmentation layout: {"out", "aux"}
                logits = logits["out"]
            scores = logits
            if logits.ndim > 2:
                # A segmentation model's logits (B, K, *S): the class score is the sum of the
                # class's logits over every position (Vinogradova, Dibrov & Myers 2020, "Towards
                # interpretable semantic segmentation via gradient-weighted class activation
                # mapping", AAAI, with the whole input as the region); the logits kept in the
                # result are their mean over the positions (the sum divided by a constant).
                scores = logits.flatten(2).sum(2)
                logits = logits.flatten(2).mean(2)
            if logits.ndim != 2:
                raise ValueError(f"expected logits (B, K) or (B, K, *S), got shape {tuple(logits.shape)}")
            if acts.ndim != x.ndim:
                raise ValueError(f"layer {name!r} outputs shape {tuple(acts.shape)}, not a spatial map "
                                 f"of rank {x.ndim} like the input")
            b = logits.shape[0]
            if target is None:
                classes = logits.argmax(1)
            else:
                classes = torch.as_tensor(target, device=logits.device).long().flatten()
                classes = classes.expand(b) if classes.numel() == 1 else classes
                if classes.numel() != b or (classes < 0).any() or (classes >= logits.shape[1]).any():
                    raise ValueError(f"target {target!r} is not one class (0..{logits.shape[1] - 1}) per sample")
            score = scores.gather(1, classes.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, acts)
    finally:
        model.train(was_training)
    acts, grads = acts.detach(), grads.detach()
    weights = grad_cam_weights(acts, grads) if method == "gradcam" else grad_cam_pp_weights(acts, grads)
    raw = F.relu((weights.view(*weights.shape, *([1] * (acts.ndim - 2))) * acts).sum(1))  # (B, *S')
    mode = linear_mode(x.ndim - 2)
    up = F.interpolate(raw.unsqueeze(1).float(), size=tuple(x.shape[2:]), mode=mode, align_corners=False)[:, 0]
    peak = up.flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (up.ndim - 1)))
    cam = (up / peak).clamp_(0, 1)
    return CAMResult(cam=cam, raw=raw, classes=classes.detach(), logits=logits.detach(), layer=name,
                     activations=acts, gradients=grads, weights=weights, method=method)

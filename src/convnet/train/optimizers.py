"""Layer-wise adaptive optimisers for large batches: LARS and LAMB.

Both scale each layer's step by a *trust ratio*, the norm of the layer's weights over the norm of
its proposed update, so that every layer moves by a similar fraction of its own size whatever the
scale of its gradient.

- LARS: You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks"
  (arXiv:1708.03888), Algorithm 1 — SGD with momentum and a local learning rate
  ``eta * ||w|| / (||g|| + beta * ||w||)`` per layer.
- LAMB: You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76
  minutes" (ICLR 2020, arXiv:1904.00962), Algorithm 2 — Adam's bias-corrected direction plus
  decoupled weight decay, rescaled per layer by ``||x|| / ||r + lambda x||``.

A "layer" is one parameter tensor. Param groups with ``trust_ratio=False`` skip the adaptation
(and, through ``weight_decay=0``, the decay): the papers' reference implementations exclude
biases and normalisation parameters this way (BERT's ``exclude_from_layer_adaptation``; the TPU
LARS optimiser's skip list). ``train.optim.param_groups`` sets the flag on 1-D parameters.

Optimiser state holds only tensors (so a checkpoint stores it as safetensors), and
``state_dict`` / ``load_state_dict`` are torch's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def _trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor, numerator: torch.Tensor) -> torch.Tensor:
    """``numerator / u_norm``, or 1 where either norm is zero (a zero-initialised layer, or a
    zero update, would otherwise never move or divide by zero) — as the reference code does."""
    ratio = numerator / torch.where(u_norm > 0, u_norm, torch.ones_like(u_norm))
    return torch.where((w_norm > 0) & (u_norm > 0), ratio, torch.ones_like(ratio))


def _closure_loss(closure: Callable[[], float] | None) -> float | None:
    """torch.optim's closure protocol: re-evaluate the loss with gradients enabled."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Lars(torch.optim.Optimizer):
    """LARS (You, Gitman & Ginsburg 2017, Algorithm 1), per parameter tensor ``w`` with gradient
    ``g``, global learning rate ``lr``, trust coefficient ``eta``, weight decay ``beta`` and
    momentum ``m``::

        local_lr = eta * ||w|| / (||g|| + beta * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
        v <- m * v + lr * local_lr * (g + beta * w)
        w <- w - v                      (nesterov: w <- w - (m * v + lr * local_lr * (g + beta * w)))

    The velocity carries the learning rate, as in the paper, so a scheduled change of ``lr``
    acts on new gradients only. Groups with ``trust_ratio=False`` use ``local_lr = 1`` (plain
    SGD with momentum). ``eps`` (0 in the paper) only guards against a zero denominator.

    Args:
        params: parameters or param groups.
        lr: global learning rate (gamma_t in the paper).
        momentum: momentum ``m``.
        weight_decay: ``beta``.
        trust_coefficient: ``eta`` (0.001 in the paper).
        nesterov: Nesterov momentum, in the form of the TPU reference implementation.
        eps: added to the denominator of the local learning rate.
    """

    def __init__(self, params: Iterable, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, nesterov: bool = False, eps: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0 or eps < 0:
            raise ValueError(f"Lars: invalid hyper-parameters lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}, trust_coefficient={trust_coefficient}, eps={eps}")
        if nesterov and momentum <= 0:
            raise ValueError("Lars: nesterov momentum needs momentum > 0")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient, "nesterov": nesterov, "eps": eps, "trust_ratio": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("Lars does not support sparse gradients")
                if group["trust_ratio"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    denom = g_norm + wd * w_norm + group["eps"]
                    # Both norms must be positive (the reference's nested where); the ratio
                    # itself is eta * ||w|| / denom.
                    local = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / torch.where(denom > 0, denom, 1.0),
                                        torch.ones_like(w_norm))
                    scaled_lr: torch.Tensor | float = lr * local
                else:
                    scaled_lr = lr
                d = g.add(p, alpha=wd) if wd != 0 else g.clone()
                d.mul_(scaled_lr)  # lr * local_lr * (g + beta * w)
                if m != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    v = state["momentum_buffer"]
                    v.mul_(m).add_(d)
                    update = v.mul(m).add_(d) if group["nesterov"] else v
                else:
                    update = d
                p.sub_(update)
        return loss


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019, Algorithm 2), per parameter tensor ``x`` with gradient ``g``::

        m <- beta1 * m + (1 - beta1) * g ;  v <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t) ;  v_hat = v / (1 - beta2^t)
        r = m_hat / (sqrt(v_hat) + eps)
        u = r + lambda * x
        x <- x - lr * phi(||x||) / ||u|| * u      (phi = identity; ratio 1 if ||x|| or ||u|| is 0)

    Groups with ``trust_ratio=False`` take ``x <- x - lr * u`` (AdamW's step with the decay
    scaled by lr, as in the paper's update).

    Args:
        params: parameters or param groups.
        lr: learning rate (eta_t).
        betas: ``(beta1, beta2)``.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: ``lambda``, decoupled from the gradient.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lamb: invalid hyper-parameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "trust_ratio": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    # A float tensor, not a python int, so that the whole state is tensors.
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                # u = m_hat / (sqrt(v_hat) + eps) with two temporaries instead of four.
                u = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                u = torch.div(m, u).div_(1 - beta1 ** t)
                if group["weight_decay"] != 0:
                    u.add_(p, alpha=group["weight_decay"])
                if group["trust_ratio"]:
                    w_norm = torch.linalg.vector_norm(p)
                    u.mul_(_trust_ratio(w_norm, torch.linalg.vector_norm(u), w_norm))
                p.sub_(u, alpha=group["lr"])
        return loss

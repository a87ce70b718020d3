"""Neocognitron: K. Fukushima, "Neocognitron: A self-organizing neural network model for a
mechanism of pattern recognition unaffected by shift in position", Biological Cybernetics 36,
193-202 (1980); with the refinements of K. Fukushima, "Neocognitron for handwritten digit
recognition", Neurocomputing 51, 161-180 (2003) and "Artificial vision by multi-layered neural
networks: Neocognitron and its advances", Neural Networks 37, 103-119 (2013).

A contrast-extracting layer UG, then stages of S-cells and C-cells:

- **UG** (2003): on- and off-centre cells, a fixed difference of Gaussians, rectified. It
  removes the input's offset and hands S1 non-negative activity.
- **S-cells** extract features. Each cell plane has one weight vector ``a`` shared over all
  positions; the V-cell at each position sends the root-mean-square of the input in the
  connection area, ``v = sqrt(sum c(nu) u(n+nu)^2)`` with a fixed, decreasing spatial weighting
  ``c``. The S-cell's response is subtractive (shunting) inhibition against it, rectified:
  ``u_S = phi[a.u / |a| - theta v] / (1 - theta) = |x| phi[s - theta] / (1 - theta)`` (the
  form of the 2003 and 2013 papers), where ``s`` is the cosine similarity of the input
  ``x = sqrt(c) u`` with the weights and ``theta = r / (1 + r)`` comes from the 1980 paper's selectivity ``r``
  (``u_S = r phi[(1 + e) / (1 + r/(1+r) b v) - 1]``). The response is zero unless the input is
  within ``arccos(theta)`` of the weights, and largest when it is proportional to them.
- **C-cells** blur each S-plane with a fixed Gaussian weighted average and subsample by 2,
  then saturate (``psi(x) = x / (1 + x)``, as the 1980 C-cells): a feature shifted by a pixel
  still excites the same C-cell, which is where the tolerance to shift comes from.

Learning is without a teacher, one S-layer at a time with the lower layers fixed (1980;
2003): in each competition area (a column over every cell plane, a few positions wide)
only the S-cell with the largest output is reinforced, ``a += q x`` (its weights move toward
its input, in proportion to it); where every S-cell of an area is silent although its input is
not, a new cell plane is added whose weights are that input ("add-if-silent", 2013),
until the layer has ``max_planes``. ``fit_unsupervised`` runs this over images;
``fit_readout`` then uses labels for the readout only: nearest class prototype (cosine
similarity to the class's closest prototype, ``prototypes_per_class`` spherical k-means centres
of its top-layer vectors, as the 2003 network labelled its top cells with training vectors) and a linear probe (multinomial logistic regression by L-BFGS on the
frozen, standardised features). ``forward(x)`` returns the **linear probe's** logits, so the
model fits every classifier contract; ``head.prototype_logits`` gives the other readout.

The weights learned by competition are ``requires_grad=False`` parameters (saved, moved and
counted with ``trainable_only=False``, never touched by an optimiser); the fixed kernels (UG,
V-cell and C-cell weightings) are buffers; only ``head.fc`` is trained by gradient, so the
registry's (trainable) parameter count is the probe's. No published figure exists for this
layout's size: ``reference_params`` is None and the counts are pinned by
tests/test_neocognitron.py. A freshly built model starts as the 1980 paper does, every plane
with random positive weights (so it computes something before learning); ``fit_unsupervised``
clears the planes and grows them by add-if-silent, as the later papers do.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import ConvNetClassifier, FeatureInfo
from ._registry import register


def gaussian_kernel(spatial_dims: int, size: int, sigma: float) -> torch.Tensor:
    """An isotropic Gaussian of ``size`` taps per axis, peak 1: shape (size,) * spatial_dims."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-r.square() / (2 * sigma * sigma))
    k = g
    for _ in range(spatial_dims - 1):
        k = k.unsqueeze(-1) * g
    return k


def _fixed_conv(spatial_dims: int, weight: torch.Tensor, in_channels: int, stride: int = 1,
                groups: int = 1) -> nn.Module:
    """A layers.conv whose weight (out, in / groups, *k) is a fixed buffer, not a parameter:
    it is rebuilt from the spec, so it is neither trained nor saved."""
    conv = L.conv(spatial_dims, in_channels, weight.shape[0], weight.shape[-1], stride, bias=False, groups=groups)
    del conv.weight
    conv.register_buffer("weight", weight.contiguous(), persistent=False)
    return conv


class ContrastExtraction(nn.Module):
    """UG (Fukushima 2003): on- and off-centre cells per input channel, a difference of
    Gaussians (centre ``sigma``, surround ``2 sigma``, zero sum) then rectified."""

    def __init__(self, spatial_dims: int, in_channels: int, kernel_size: int = 7, sigma: float = 1.0):
        super().__init__()
        centre = gaussian_kernel(spatial_dims, kernel_size, sigma)
        surround = gaussian_kernel(spatial_dims, kernel_size, 2 * sigma)
        dog = centre / centre.sum() - surround / surround.sum()  # zero sum: offsets vanish
        dog = dog / dog.abs().sum() * 2
        # One group per input channel, each with an on- and an off-centre output.
        weight = torch.stack([dog, -dog]).repeat(in_channels, *([1] * spatial_dims)).unsqueeze(1)
        self.conv = _fixed_conv(spatial_dims, weight, in_channels, groups=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))  # (B, C, *S) -> (B, 2C, *S)


class SCells(nn.Module):
    """A layer of S-cells with its V-cells, learned by competition with add-if-silent.

    Attributes:
        conv: the excitatory weights, ``normalise(accumulated) * sqrt(c)``, one output per
            cell plane (``max_planes``; planes beyond ``num_planes`` are zero and never fire).
        vcell: the V-cells: weighted sum of the squared input with the fixed weighting ``c``.
        accumulated: the reinforcement each plane has received, ``sum q x`` over its wins.
    """

    def __init__(self, spatial_dims: int, in_channels: int, max_planes: int, kernel_size: int = 5,
                 threshold: float = 0.6, learning_threshold: float | None = None, competition: int = 3,
                 reinforcement: float = 1.0, silent_floor: float = 0.2):
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"S-cell threshold theta = r / (1 + r) must be in [0, 1), got {threshold}")
        self.spatial_dims = spatial_dims
        self.in_channels, self.max_planes = in_channels, max_planes
        self.threshold = threshold
        self.learning_threshold = threshold if learning_threshold is None else learning_threshold
        self.reinforcement, self.silent_floor = reinforcement, silent_floor
        self.conv = L.conv(spatial_dims, in_channels, max_planes, kernel_size, bias=False)
        self.conv.weight.requires_grad_(False)
        # c(nu): a spatial weighting that decreases from the centre (1980; 2003).
        c = gaussian_kernel(spatial_dims, kernel_size, kernel_size / 3)
        self.vcell = _fixed_conv(spatial_dims, c[None, None], 1)
        self.register_buffer("sqrt_c", c.sqrt(), persistent=False)
        self.competition = L.max_pool(spatial_dims, competition, 1, competition // 2)
        self.register_buffer("accumulated", torch.zeros(max_planes, in_channels, *([kernel_size] * spatial_dims)))
        self.register_buffer("num_planes", torch.tensor(0))
        self.random_planes()

    def inflated(self, time_kernel: int) -> nn.Module:
        # Its planes are learned by competition over the input's own geometry; repeating them
        # in time would not be what the 3-D learning rule finds.
        raise TypeError("cannot inflate SCellLayer: learn a 3-D neocognitron instead "
                        "(create_model('neocognitron', spatial_dims=3) and fit_unsupervised)")

    # -- response -------------------------------------------------------------------------
    def inhibition(self, x: torch.Tensor) -> torch.Tensor:
        """V-cells: the c-weighted root-mean-square of the input, (B, C, *S) -> (B, 1, *S)."""
        return self.vcell(x.square().sum(1, keepdim=True)).clamp_min(0).sqrt()

    def respond(self, x: torch.Tensor, threshold: float | None = None, planes: slice | None = None,
                v: torch.Tensor | None = None) -> torch.Tensor:
        """S-cell outputs ``phi[a.x - theta v] / (1 - theta)`` of the given planes (all by default)."""
        theta = self.threshold if threshold is None else threshold
        weight = self.conv.weight if planes is None else self.conv.weight[planes]
        v = self.inhibition(x) if v is None else v
        return F.relu(self.conv._conv_forward(x, weight, None) - theta * v) / (1 - theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.respond(x)  # (B, C_in, *S) -> (B, max_planes, *S)

    # -- learning -------------------------------------------------------------------------
    @torch.no_grad()
    def sync_weights(self) -> None:
        """conv.weight = accumulated / |accumulated| * sqrt(c): unit-norm planes in x-space."""
        acc = self.accumulated
        norm = acc.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (acc.ndim - 1)))
        self.conv.weight.copy_(acc / norm * self.sqrt_c)

    @torch.no_grad()
    def random_planes(self, generator: torch.Generator | None = None) -> None:
        """The 1980 initial state: every plane active with small random positive weights."""
        self.accumulated.copy_(torch.rand(self.accumulated.shape, generator=generator) + 0.01)
        self.num_planes.fill_(self.max_planes)
        self.sync_weights()

    @torch.no_grad()
    def clear_planes(self) -> None:
        """No planes: the starting point of add-if-silent learning."""
        self.accumulated.zero_()
        self.num_planes.zero_()
        self.sync_weights()

    def gather_inputs(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """sum over batch and positions of mask[b, k, n] * x-vector at (b, n), per k: the
        weight-gradient of a convolution, so it works in every spatial_dims without unfolding.
        x: (B, C_in, *S), mask: (B, K, *S) -> (K, C_in, *k)."""
        probe = torch.zeros(mask.shape[1], *self.conv.weight.shape[1:], dtype=x.dtype, device=x.device,
                            requires_grad=True)
        with torch.enable_grad():
            out = self.conv._conv_forward(x, probe, None)
            (grad,) = torch.autograd.grad((out * mask).sum(), probe)
        return grad * self.sqrt_c  # x = sqrt(c) u: the vector the V-cell normalises

    @torch.no_grad()
    def learn(self, x: torch.Tensor) -> dict[str, int]:
        """One step of competitive learning on a batch (B, C_in, *S) with the layer's learning
        threshold: add-if-silent, then reinforce the winner of every competition area."""
        theta = self.learning_threshold
        v = self.inhibition(x)  # (B, 1, *S)
        n = int(self.num_planes)
        if n:
            best = self.respond(x, theta, slice(0, n), v).amax(1)
        else:
            best = x.new_zeros(v[:, 0].shape)
        floor = self.silent_floor * v.flatten(1).amax(1).view(-1, *([1] * self.spatial_dims))
        # Silent: no S-cell of the competition area fires although the input is not blank.
        silent = (self.competition(best.unsqueeze(1))[:, 0] <= 0) & (v[:, 0] > floor.clamp_min(1e-6))
        added = 0
        while n < self.max_planes and bool(silent.any()):
            b = int(silent.flatten(1).any(1).nonzero()[0])
            pos = int((v[b, 0] * silent[b]).flatten().argmax())
            mask = torch.zeros_like(v[b:b + 1])
            mask.view(-1)[pos] = 1.0
            self.accumulated[n] = self.gather_inputs(x[b:b + 1], mask)[0]
            n += 1
            added += 1
            self.num_planes.fill_(n)
            self.sync_weights()
            new = self.respond(x, theta, slice(n - 1, n), v)[:, 0]
            silent &= self.competition(new.unsqueeze(1))[:, 0] <= 0
        if n == 0:
            return {"added": 0, "reinforced": 0}
        out = self.respond(x, theta, slice(0, n), v)  # (B, n, *S)
        best, plane = out.max(1)
        # The winner of each competition area: the largest output over the planes, and a local
        # maximum over the area's positions.
        winner = (best > 0) & (best >= self.competition(best.unsqueeze(1))[:, 0])
        mask = F.one_hot(plane, n).movedim(-1, 1).to(x.dtype) * winner.unsqueeze(1)
        self.accumulated[:n] += self.reinforcement * self.gather_inputs(x, mask)
        self.sync_weights()
        return {"added": added, "reinforced": int(winner.sum())}


class CCells(nn.Module):
    """C-cells: a fixed Gaussian weighted average over a neighbourhood of each S-plane,
    subsampled by ``stride``, then the saturation ``psi(x) = x / (1 + x)`` (1980)."""

    def __init__(self, spatial_dims: int, channels: int, kernel_size: int = 5, stride: int = 2,
                 sigma: float = 1.0, saturation: bool = True):
        super().__init__()
        d = gaussian_kernel(spatial_dims, kernel_size, sigma)
        weight = (d / d.sum()).expand(channels, 1, *d.shape)
        self.blur = _fixed_conv(spatial_dims, weight, channels, stride, groups=channels)
        self.saturation = saturation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blur(x)  # (B, C, *S) -> (B, C, *S / stride)
        return x / (1 + x) if self.saturation else x


class Stage(nn.Module):
    """One S-layer and the C-layer above it (``s``, ``c``)."""

    def __init__(self, s: SCells, c: CCells):
        super().__init__()
        self.s, self.c = s, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.s(x))


def spherical_kmeans(u: torch.Tensor, k: int, iterations: int = 10) -> torch.Tensor:
    """k unit vectors summarising unit rows ``u`` (N, F): farthest-point seeding from the mean
    (deterministic), then ``iterations`` of assign-to-most-similar and renormalised means."""
    centres = [F.normalize(u.mean(0), dim=0)]
    for _ in range(min(k, len(u)) - 1):
        centres.append(u[(u @ torch.stack(centres).t()).amax(1).argmin()])
    c = torch.stack(centres)
    for _ in range(iterations):
        assign = (u @ c.t()).argmax(1)
        c = F.normalize(torch.zeros_like(c).index_add_(0, assign, u) + 1e-6 * c, dim=1)
    if len(c) < k:  # fewer samples than prototypes: repeat the last ones
        c = torch.cat([c, c[-1:].expand(k - len(c), -1)])
    return c


class ReadoutHead(nn.Module):
    """The readouts of the top C-layer: average pooling to a fixed ``grid`` per axis and
    flattening (``pre_logits``), then the linear probe ``fc`` on standardised features.
    ``prototypes`` (classes, per_class, F), unit vectors, give the nearest-prototype readout."""

    def __init__(self, spatial_dims: int, channels: int, grid: int, num_classes: int, per_class: int = 1):
        super().__init__()
        self.pool = L.adaptive_avg_pool(spatial_dims, grid)
        self.in_features = channels * grid ** spatial_dims
        self.per_class = per_class
        self.register_buffer("feature_mean", torch.zeros(self.in_features))
        self.register_buffer("feature_std", torch.ones(self.in_features))
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.register_buffer("prototypes", torch.zeros(max(num_classes, 0), self.per_class, self.in_features,
                                                       device=self.feature_mean.device))

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.feature_mean) / self.feature_std

    def prototype_logits(self, f: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, F) -> (B, classes): the cosine similarity of the standardised
        features to the class's most similar prototype."""
        u = F.normalize(self.standardise(f), dim=1)
        return torch.einsum("bf,ckf->bck", u, self.prototypes).amax(2)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        f = self.pool(x).flatten(1)  # (B, C, *S) -> (B, C * grid^d)
        return f if pre_logits else self.fc(self.standardise(f))


@dataclass(frozen=True)
class NeocognitronSpec:
    """The layout: per S-layer its maximum planes, kernel (connection area), recognition and
    learning thresholds theta = r / (1 + r); the C-layers' blur; UG; learning settings."""

    planes: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (5, 5, 5)
    thresholds: tuple[float, ...] = (0.65, 0.6, 0.6)
    learning_thresholds: tuple[float, ...] = (0.75, 0.7, 0.7)
    competition: int = 3  # competition area, positions per axis
    c_kernel: int = 5
    c_sigma: float = 1.0
    contrast_kernel: int = 7
    contrast_sigma: float = 1.0
    readout_grid: int = 4
    prototypes_per_class: int = 10  # chosen on the validation split (mean over seeds 0-2)
    epochs: int = 1
    batch_size: int = 64  # images per learning step (winners of a batch are reinforced together)
    probe_weight_decay: float = 1e-3
    probe_steps: int = 200


class Neocognitron(ConvNetClassifier):
    """The neocognitron in 1, 2 or 3 dims: ``contrast`` (UG), ``stages[i].s`` / ``stages[i].c``,
    ``head`` (linear probe ``head.fc``; prototypes ``head.prototypes``)."""

    learning = "unsupervised"

    def __init__(self, spec: NeocognitronSpec = NeocognitronSpec(), spatial_dims: int = 2, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        n = len(spec.planes)
        if not (len(spec.kernels) == len(spec.thresholds) == len(spec.learning_thresholds) == n):
            raise ValueError(f"planes, kernels, thresholds and learning_thresholds need one entry per "
                             f"S-layer ({n}), got {spec.kernels}, {spec.thresholds}, {spec.learning_thresholds}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.contrast = ContrastExtraction(d, in_channels, spec.contrast_kernel, spec.contrast_sigma)
        channels, reduction = 2 * in_channels, 1
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i in range(n):
            s = SCells(d, channels, spec.planes[i], spec.kernels[i], spec.thresholds[i],
                       spec.learning_thresholds[i], spec.competition)
            channels = spec.planes[i]
            self.stages.append(Stage(s, CCells(d, channels, spec.c_kernel, 2, spec.c_sigma)))
            reduction *= 2
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = ReadoutHead(d, channels, spec.readout_grid, num_classes, spec.prototypes_per_class)
        self.cam_layer = f"stages.{n - 1}"

    def forward_features(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """The top C-layer (B, planes[-1], *S / 2^n); ``depth`` stops after that many stages."""
        x = self.contrast(x)
        for stage in self.stages[:depth]:
            x = stage(x)
        return x

    # -- learning without labels ----------------------------------------------------------
    @torch.no_grad()
    def _batched(self, images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                 batch: int = 256) -> torch.Tensor:
        return torch.cat([fn(images[i:i + batch]) for i in range(0, len(images), batch)])

    @torch.no_grad()
    def fit_unsupervised(self, images: torch.Tensor, generator: torch.Generator | None = None,
                         progress: Callable[[dict[str, Any]], None] | None = None,
                         stages: int | None = None) -> dict[str, Any]:
        """Competitive learning, one S-layer at a time with the layers below fixed.

        Every S-layer starts without planes and grows them by add-if-silent while its winners
        are reinforced, over ``spec.epochs`` passes of the images in a shuffled order.

        Args:
            images: (N, in_channels, *S); no labels.
            generator: the order of presentation (a fixed seed gives the same network).
            progress: called after each batch with {"layer", "seen", "total", "planes"}.
            stages: learn only the first ``stages`` S-layers (all by default); the others keep
                their planes.

        Returns:
            {"planes": per layer, "added": per layer, "reinforced": per layer, "seconds"}.
        """
        self.check_input(images)
        start = time.perf_counter()
        was_training = self.training
        self.eval()
        x = self._batched(images, self.contrast)
        stats: dict[str, Any] = {"planes": [], "added": [], "reinforced": []}
        bs = self.spec.batch_size
        for i, stage in enumerate(self.stages[:stages]):
            stage.s.clear_planes()
            added = reinforced = 0
            for _ in range(self.spec.epochs):
                order = torch.randperm(len(x), generator=generator)
                for j in range(0, len(x), bs):
                    step = stage.s.learn(x[order[j:j + bs]])
                    added += step["added"]
                    reinforced += step["reinforced"]
                    if progress is not None:
                        progress({"layer": i, "seen": min(j + bs, len(x)), "total": len(x),
                                  "planes": int(stage.s.num_planes)})
            stats["planes"].append(int(stage.s.num_planes))
            stats["added"].append(added)
            stats["reinforced"].append(reinforced)
            x = self._batched(x, stage)
        self.train(was_training)
        stats["seconds"] = time.perf_counter() - start
        return stats

    # -- readouts (labels used here only) -----------------------------------------------
    @torch.no_grad()
    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, *S) -> the readouts' input (N, F), in batches, without gradients."""
        return self._batched(images, lambda b: self.head(self.forward_features(b), pre_logits=True))

    def fit_readout(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Fit the class prototypes and the linear probe on the frozen features.

        Prototypes: ``prototypes_per_class`` unit vectors per class, by spherical k-means of the
        class's unit-length standardised feature vectors (one: the renormalised class mean). Probe: multinomial logistic regression with L2 penalty
        ``probe_weight_decay``, ``probe_steps`` L-BFGS iterations from zero weights.
        """
        self.check_input(images)
        if self.num_classes <= 0:
            raise ValueError("fit_readout needs a classifier: reset_classifier(num_classes > 0) first")
        labels = labels.long().to(images.device)
        f = self.pooled_features(images)
        head = self.head
        head.feature_mean.copy_(f.mean(0))
        head.feature_std.copy_(f.std(0).clamp_min(1e-3 * float(f.std(0).max().clamp_min(1e-12))))
        z = head.standardise(f)
        unit = F.normalize(z, dim=1)
        for c in range(self.num_classes):
            if bool((labels == c).any()):
                head.prototypes[c] = spherical_kmeans(unit[labels == c], head.per_class)
        fc = head.fc
        with torch.no_grad():
            fc.weight.zero_()
            fc.bias.zero_()
        opt = torch.optim.LBFGS(fc.parameters(), lr=1, max_iter=self.spec.probe_steps,
                                history_size=20, line_search_fn="strong_wolfe")
        wd = self.spec.probe_weight_decay

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(fc(z), labels) + 0.5 * wd * fc.weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            loss = float(F.cross_entropy(fc(z), labels))
            return {"features": z.shape[1], "probe_loss": loss,
                    "prototype_train_acc": float((head.prototype_logits(f).argmax(1) == labels).float().mean()),
                    "probe_train_acc": float((fc(z).argmax(1) == labels).float().mean())}

    @torch.no_grad()
    def evaluate_readouts(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Accuracy of both readouts: {"prototype_acc", "probe_acc"}."""
        self.check_input(images)
        labels = labels.long().to(images.device)
        f = self.pooled_features(images)
        proto = self.head.prototype_logits(f).argmax(1)
        probe = self.head.fc(self.head.standardise(f)).argmax(1)
        return {"prototype_acc": float((proto == labels).float().mean()),
                "probe_acc": float((probe == labels).float().mean())}


_PAPER = ("Fukushima. Neocognitron: A self-organizing neural network model for a mechanism of pattern "
          "recognition unaffected by shift in position. Biological Cybernetics 36, 193-202, 1980")

# One row: a UG layer and three S/C stages for 32x32 inputs (32 -> 16 -> 8 -> 4), as the 2003
# network's four stages for 65x65. Its plane counts are maxima that add-if-silent grows toward;
# thresholds, batch size and prototypes per class were chosen on the digits' validation split
# (as in the 2003 paper, theta is set per layer, higher while learning than while recognising). No published parameter count
# exists for this layout: at its maximum planes it holds 2*25*16 + 16*25*32 + 32*25*64 = 64,800
# weights learned by competition and 64*4*4*10 + 10 = 10,250 trained (probe) ones, both
# recounted by tests/test_neocognitron.py.
NEOCOGNITRON_SPECS: dict[str, NeocognitronSpec] = {"neocognitron": NeocognitronSpec()}

for _name, _spec in NEOCOGNITRON_SPECS.items():
    register(_name, Neocognitron, _spec, family="neocognitron", paper=_PAPER, year=1980, in_channels=1,
             num_classes=10, input_size=32, mean=(0.0,), std=(1.0,), reference_params=None,
             reference="none published; 10,250 trainable (probe) + 64,800 learned by competition",
             extra={"tiny": {"planes": (3, 4, 4), "kernels": (3, 3, 3), "contrast_kernel": 5, "c_kernel": 3,
                                # low thresholds: random initial planes must fire in 3-D too
                                "readout_grid": 2, "thresholds": (0.3, 0.3, 0.3)}})

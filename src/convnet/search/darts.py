"""DARTS: H. Liu, K. Simonyan, Y. Yang, "Differentiable Architecture Search", ICLR 2019
(arXiv:1806.09055): the search.

The supernet (§2.2) puts every candidate operation on every edge of the cell: an edge computes
the *mixed operation* sum_o softmax(alpha)_o * o(x), with one alpha matrix (edges x operations)
shared by all normal cells and one by all reduction cells. Its batch norms have no affine
parameters (§A.1.1: they would rescale the candidate operations' outputs), and a pooling
operation is followed by one (the authors' model_search.py).

Search (§2.3, Algorithm 1, and §A.1.1): the training split is halved; each step updates alpha
on a batch of the search-val half, then the weights on a batch of the search-train half.
Weights: SGD, momentum 0.9, weight decay 3e-4, learning rate cosine-annealed from 0.025 to
0.001 (the authors' train_search.py; the paper anneals to zero), gradient-norm clip 5. Alpha:
Adam, learning rate 3e-4, betas (0.5, 0.999), weight decay 1e-3, initialised at 1e-3 * N(0, 1)
as in the authors' code (near the paper's zero, i.e. equal attention on every operation).

* First order (xi = 0): alpha descends grad_alpha L_val(w, alpha).
* Second order (§2.3, xi = the weights' learning rate): alpha descends the gradient at the
  weights one virtual SGD step ahead, w' = w - xi (momentum + grad_w L_train(w, alpha) + wd w):
  grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha),
  the Hessian-vector product by central finite differences:
  (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),
  w+- = w +- eps grad_w' L_val(w', alpha), eps = 0.01 / ||grad_w' L_val(w', alpha)||.

Discretisation (§2.4): each intermediate node keeps its two strongest incoming edges, an edge's
strength being its strongest operation other than "none", and each kept edge its strongest
operation other than "none". Under a cost constraint, if that genotype is too costly, kept edges
step down to cheaper operations (by multiply-accumulates per pixel), each time the one that
loses the least softmax weight, until the network fits.

The budget's fraction replaces the epoch count of the cosine schedule (a time budget anneals
over the time), and an "epoch" row (derived genotype, its cost, the supernet's search-val
accuracy) is written to the history after every pass over the search-train half. That accuracy
is measured on the first ``score_samples`` search-val samples with batch-norm statistics of the
batch (the running averages lag far behind after a few epochs; the running statistics are left
untouched), and only describes the supernet: it plays no part in the genotype.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .. import layers as L
from ..models.darts import FactorizedReduce, Genotype, ReLUConvNorm, make_op, reduction_layers
from .base import SearchAlgorithm, SearchResult, register_algorithm
from .evaluate import build_seeded
from .spaces import OP_UNIT_COST, DartsSpace


# -- the supernet -----------------------------------------------------------------------------------

class MixedOp(nn.Module):
    """Every candidate operation on one edge; ``forward(x, weights)`` = sum_o weights[o] * o(x) (§2.2)."""

    def __init__(self, spatial_dims: int, channels: int, stride: int, primitives: tuple[str, ...]):
        super().__init__()
        ops = []
        for name in primitives:
            op = make_op(name, spatial_dims, channels, stride, affine=False)
            if "pool" in name:  # the authors' model_search.py: a parameter-free BN after pooling
                op = nn.Sequential(op, L.norm("batch", spatial_dims, channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


def edge_offset(node: int) -> int:
    """The row of node ``node``'s first incoming edge in an alpha matrix (node i has i + 2 inputs)."""
    return node * (node + 3) // 2


class SearchCell(nn.Module):
    """A cell of mixed operations: node i sums the mixed operations on all its i + 2 inputs."""

    def __init__(self, spatial_dims: int, steps: int, multiplier: int, prev_prev_channels: int, prev_channels: int,
                 channels: int, reduction: bool, reduction_prev: bool, primitives: tuple[str, ...]):
        super().__init__()
        d = spatial_dims
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (FactorizedReduce(d, prev_prev_channels, channels, affine=False) if reduction_prev
                            else ReLUConvNorm(d, prev_prev_channels, channels, 1, affine=False))
        self.preprocess1 = ReLUConvNorm(d, prev_channels, channels, 1, affine=False)
        self.edges = nn.ModuleList(MixedOp(d, channels, 2 if reduction and j < 2 else 1, primitives)
                                   for i in range(steps) for j in range(i + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            offset = edge_offset(i)
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The DARTS supernet (authors' model_search.py Network), N-d; alphas are parameters named
    ``alphas_normal`` and ``alphas_reduce`` (:meth:`arch_parameters`), the rest are weights."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, init_channels: int = 8,
                 layers: int = 5, steps: int = 4, multiplier: int | None = None, stem_multiplier: int = 3,
                 primitives: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                                "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")):
        super().__init__()
        d = self.spatial_dims = L.check_dims(spatial_dims)
        self.steps, self.primitives = steps, tuple(primitives)
        multiplier = steps if multiplier is None else multiplier  # the cell concatenates its last nodes
        channels = init_channels
        stem_width = stem_multiplier * channels
        self.stem = L.ConvNormAct(d, in_channels, stem_width, 3, act_layer=None)
        prev_prev, prev, reduction_prev = stem_width, stem_width, False
        reductions = reduction_layers(layers)
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                channels *= 2
            self.cells.append(SearchCell(d, steps, multiplier, prev_prev, prev, channels, reduction, reduction_prev,
                                         self.primitives))
            prev_prev, prev, reduction_prev = prev, multiplier * channels, reduction
        self.pool = L.GlobalPool("avg")
        self.classifier = nn.Linear(prev, num_classes)
        edges = edge_offset(steps)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(edges, len(self.primitives)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(edges, len(self.primitives)))

    ARCH_NAMES = ("alphas_normal", "alphas_reduce")

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def named_weights(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if n not in self.ARCH_NAMES]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal = F.softmax(self.alphas_normal, dim=-1)
        reduce = F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(self.pool(s1))


@torch.no_grad()
def supernet_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                      batch_size: int = 64) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) with every batch norm on its batch's statistics, as the
    paper's search uses them throughout (§A.1.1), the running statistics unchanged (momentum 0
    for the pass)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    net.train()
    correct, loss = 0, 0.0
    try:
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            logits = net(xb)
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return correct / len(y), loss / len(y)


# -- discretisation -----------------------------------------------------------------------------------

def _parse(weights: torch.Tensor, steps: int, primitives: tuple[str, ...]) -> list[list]:
    """The authors' genotype() _parse: top-2 incoming edges per node by their strongest non-none
    operation, each with its strongest non-none operation (the first among equals)."""
    none = primitives.index("none") if "none" in primitives else -1
    w = weights.detach().cpu().tolist()
    edges = []
    for i in range(steps):
        rows = w[edge_offset(i):edge_offset(i) + i + 2]

        def best_op(row: list[float]) -> int:
            return max((k for k in range(len(row)) if k != none), key=lambda k: row[k])  # first of equals

        kept = sorted(range(i + 2), key=lambda j: -rows[j][best_op(rows[j])])[:2]  # stable: lower index first
        edges += [[primitives[best_op(rows[j])], j] for j in kept]
    return edges


def derive_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor, steps: int,
                    primitives: tuple[str, ...]) -> dict[str, Any]:
    """The discrete genotype (JSON form) of a pair of alpha matrices (§2.4)."""
    concat = list(range(2, 2 + steps))
    return {"normal": _parse(F.softmax(alphas_normal.detach(), -1), steps, primitives), "normal_concat": concat,
            "reduce": _parse(F.softmax(alphas_reduce.detach(), -1), steps, primitives), "reduce_concat": concat}


def constrained_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor, steps: int,
                         primitives: tuple[str, ...], fits: Callable[[dict[str, Any]], bool],
                         channels: int) -> tuple[dict[str, Any], list[str]]:
    """:func:`derive_genotype`, then, while ``fits(genotype)`` is False, the kept edge whose step
    down to a cheaper operation (OP_UNIT_COST at ``channels``) loses the least softmax weight
    takes it. Returns (genotype, the step-downs made).

    Raises:
        ValueError: no cheaper operation is left and the genotype still does not fit.
    """
    genotype = derive_genotype(alphas_normal, alphas_reduce, steps, primitives)
    weights = {"normal": F.softmax(alphas_normal.detach(), -1).cpu(),
               "reduce": F.softmax(alphas_reduce.detach(), -1).cpu()}
    changes: list[str] = []
    while not fits(genotype):
        options = []
        for cell in ("normal", "reduce"):
            for k, (op, j) in enumerate(genotype[cell]):
                row = weights[cell][edge_offset(k // 2) + j]
                cheaper = [p for p in primitives if p != "none"
                           and OP_UNIT_COST[p](channels) < OP_UNIT_COST[op](channels)]
                if cheaper:
                    new = max(cheaper, key=lambda p: row[primitives.index(p)].item())
                    loss = (row[primitives.index(op)] - row[primitives.index(new)]).item()
                    options.append((loss, cell, k, new))
        if not options:
            raise ValueError("no genotype of this supernet meets the cost constraint (every kept edge is at its "
                             "cheapest operation); loosen the constraint or shrink the space")
        _, cell, k, new = min(options, key=lambda o: o[0])
        changes.append(f"{cell} edge {k}: {genotype[cell][k][0]} -> {new}")
        genotype[cell][k][0] = new
    return genotype, changes


# -- the bilevel step -------------------------------------------------------------------------------

def finite_difference_hvp(loss_at: Callable[[dict[str, torch.Tensor]], torch.Tensor], weights: dict[str, torch.Tensor],
                          alphas: list[torch.Tensor], vector: dict[str, torch.Tensor],
                          r: float = 1e-2) -> list[torch.Tensor]:
    """grad^2_{alpha,w} L(w, alpha) . vector by central differences (§2.3):
    (grad_alpha L(w + eps v) - grad_alpha L(w - eps v)) / (2 eps), eps = r / ||v||.

    Args:
        loss_at: the loss at given weights (a dict by name), with ``alphas`` in its graph.
        weights: w (detached).
        alphas: the tensors the gradient is taken with respect to.
        vector: v, by the same names as ``weights``.
        r: the paper's 0.01.
    """
    norm = torch.sqrt(sum((v.double() ** 2).sum() for v in vector.values())).item()
    eps = r / max(norm, 1e-12)
    plus = {n: w + eps * vector[n] for n, w in weights.items()}
    grad_plus = _grad(loss_at(plus), alphas)
    minus = {n: w - eps * vector[n] for n, w in weights.items()}
    grad_minus = _grad(loss_at(minus), alphas)
    return [(p - m) / (2 * eps) for p, m in zip(grad_plus, grad_minus)]


def _grad(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of ``loss``, zeros for a tensor it does not use (a network of only reduction
    cells never reads alphas_normal)."""
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


class Architect:
    """The architecture update (authors' architect.py): Adam on alpha, first or second order.

    Args:
        net: the supernet.
        lr, betas, weight_decay: alpha's Adam (§A.1.1: 3e-4, (0.5, 0.999), 1e-3).
        momentum, weight_decay_w: the weight optimiser's, for the virtual step of the second order.
        hvp_r: eps = hvp_r / ||v|| of the finite difference (the paper's 0.01).
    """

    def __init__(self, net: SearchNetwork, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 1e-3, momentum: float = 0.9, weight_decay_w: float = 3e-4,
                 hvp_r: float = 1e-2):
        self.net = net
        self.optimizer = torch.optim.Adam(net.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
        self.momentum, self.weight_decay_w, self.hvp_r = momentum, weight_decay_w, hvp_r

    def loss(self, weights: dict[str, torch.Tensor] | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the supernet with ``weights`` in place of its own (None: its own)."""
        logits = functional_call(self.net, weights, (x,)) if weights else self.net(x)
        return F.cross_entropy(logits, y)

    def first_order_grads(self, val: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """grad_alpha L_val(w, alpha)."""
        return _grad(self.loss(None, *val), self.net.arch_parameters())

    def second_order_grads(self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                           xi: float, momentum_buffers: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The unrolled gradient (§2.3) with the finite-difference Hessian-vector product."""
        alphas = self.net.arch_parameters()
        names, params = zip(*self.net.named_weights())
        grads = _grad(self.loss(None, *train), list(params))
        buffers = momentum_buffers or {}
        with torch.no_grad():
            unrolled = {}
            for n, p, g in zip(names, params, grads):
                step = g + self.weight_decay_w * p
                if n in buffers:
                    step = step + self.momentum * buffers[n]
                unrolled[n] = (p - xi * step).detach().requires_grad_(True)
        out = _grad(self.loss(unrolled, *val), [*alphas, *unrolled.values()])
        grad_alpha = out[:len(alphas)]
        vector = dict(zip(names, out[len(alphas):]))
        hvp = finite_difference_hvp(lambda w: self.loss(w, *train), {n: p.detach() for n, p in zip(names, params)},
                                    alphas, vector, self.hvp_r)
        return [g - xi * h for g, h in zip(grad_alpha, hvp)]

    def step(self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], xi: float,
             weight_optimizer: torch.optim.Optimizer, second_order: bool) -> None:
        if second_order:
            state = weight_optimizer.state
            buffers = {n: state[p]["momentum_buffer"] for n, p in self.net.named_weights()
                       if state.get(p, {}).get("momentum_buffer") is not None}
            grads = self.second_order_grads(train, val, xi, buffers)
        else:
            grads = self.first_order_grads(val)
        for a, g in zip(self.net.arch_parameters(), grads):
            a.grad = g.detach()
        self.optimizer.step()


# -- the algorithm ------------------------------------------------------------------------------------

def _optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                          prefix: str) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


@register_algorithm
class DartsSearch(SearchAlgorithm):
    """One step = one architecture update then one weight update.

    Options:
        order: 1 (first order) or 2 (second order).
        batch_size: of both halves (the paper's 64).
        lr, lr_min: the weights' cosine schedule (0.025 -> 0.001).
        arch_lr: alpha's Adam learning rate (3e-4).
        checkpoint_every: steps between checkpoints.
        score_samples: search-val samples the supernet's accuracy is measured on per epoch.
    """

    name = "darts"
    checkpoint_every = 20

    def __init__(self, ctx: Any, order: int = 1, batch_size: int = 64, lr: float = 0.025, lr_min: float = 0.001,
                 arch_lr: float = 3e-4, checkpoint_every: int = 20, score_samples: int = 256):
        super().__init__(ctx)
        space = ctx.space
        if not isinstance(space, DartsSpace):
            raise ValueError(f"DARTS searches the darts cell space, not {space.name!r}")
        if order not in (1, 2):
            raise ValueError(f"DARTS order must be 1 or 2, got {order}")
        if batch_size < 2 or not 0 < lr_min <= lr:
            raise ValueError(f"DARTS needs batch_size >= 2 and 0 < lr_min <= lr, got {batch_size}, {lr_min}, {lr}")
        self.order, self.batch_size, self.lr, self.lr_min, self.arch_lr = order, batch_size, lr, lr_min, arch_lr
        self.checkpoint_every, self.score_samples = checkpoint_every, score_samples
        d = ctx.data
        self.primitives = ("none", *[p for p in ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                                                  "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5") if p in space.ops])
        self.net = build_seeded(lambda: SearchNetwork(d.spatial_dims, d.input_size[0], d.num_classes,
                                                      space.init_channels, space.layers, space.steps,
                                                      primitives=self.primitives), ctx.seed).to(ctx.device)
        weights = [p for _, p in self.net.named_weights()]
        self.weight_optimizer = torch.optim.SGD(weights, lr=lr, momentum=0.9, weight_decay=3e-4)
        self.architect = Architect(self.net, lr=arch_lr)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.batches = max(1, len(d.train_y) // batch_size)
        self.order_tensor: torch.Tensor | None = None
        self.position = 0  # batches done in the current epoch
        self.epoch = 0
        self.last_lr = lr

    def options(self) -> dict[str, Any]:
        return {"order": self.order, "batch_size": self.batch_size, "lr": self.lr, "lr_min": self.lr_min,
                "arch_lr": self.arch_lr, "score_samples": self.score_samples}

    def _lr(self, fraction: float) -> float:
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * fraction))

    def step(self, fraction: float) -> list[dict[str, Any]]:
        d, device = self.ctx.data, self.ctx.device
        if self.order_tensor is None or self.position >= self.batches:
            self.order_tensor, self.position = torch.randperm(len(d.train_y), generator=self.generator), 0
        idx = self.order_tensor[self.position * self.batch_size:(self.position + 1) * self.batch_size]
        val_idx = torch.randperm(len(d.val_y), generator=self.generator)[:self.batch_size]
        train = (d.train_x[idx].to(device), d.train_y[idx].to(device))
        val = (d.val_x[val_idx].to(device), d.val_y[val_idx].to(device))
        lr = self.last_lr = self._lr(fraction)
        for group in self.weight_optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        self.architect.step(train, val, lr, self.weight_optimizer, self.order == 2)
        weights = [p for _, p in self.net.named_weights()]
        loss = F.cross_entropy(self.net(train[0]), train[1])
        self.weight_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=weights)
        nn.utils.clip_grad_norm_(weights, 5.0)
        self.weight_optimizer.step()
        self.position += 1
        self.train_loss = loss.item()
        if self.position < self.batches:
            return []
        self.epoch += 1
        return [self._row("epoch")]

    def _fits(self, genotype: dict[str, Any]) -> bool:
        return self.ctx.constraint.violation(self.ctx.cost(genotype)) is None

    def genotype(self) -> tuple[dict[str, Any], list[str]]:
        """The current alphas' genotype, stepped down to meet the constraint."""
        space = self.ctx.space
        return constrained_genotype(self.net.alphas_normal, self.net.alphas_reduce, space.steps, self.primitives,
                                    self._fits, space.init_channels)

    def _row(self, kind: str) -> dict[str, Any]:
        genotype, changes = self.genotype()
        d, n = self.ctx.data, self.score_samples
        score, val_loss = supernet_accuracy(self.net, d.val_x[:n], d.val_y[:n], self.ctx.device)
        row = {"kind": kind, "epoch": self.epoch, "arch": genotype, "cost": self.ctx.cost(genotype), "score": score,
               "score_of": f"supernet, {min(n, len(d.val_y))} search-val samples", "val_loss": val_loss,
               "lr": self.last_lr,
               "alphas_normal": F.softmax(self.net.alphas_normal.detach(), -1).cpu().tolist(),
               "alphas_reduce": F.softmax(self.net.alphas_reduce.detach(), -1).cpu().tolist()}
        if changes:
            row["stepped_down"] = changes
        return row

    def finish(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The alphas moved since the last epoch row unless the budget ended on an epoch boundary.
        return [] if self.position in (0, self.batches) and history else [self._row("final")]

    def progress(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "lr": f"{self.last_lr:.4f}"}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        w_tensors, w_meta = _optimizer_state(self.weight_optimizer, "weight_optim")
        a_tensors, a_meta = _optimizer_state(self.architect.optimizer, "arch_optim")
        tensors.update(w_tensors)
        tensors.update(a_tensors)
        tensors["rng.search"] = self.generator.get_state()
        if self.order_tensor is not None:
            tensors["epoch_order"] = self.order_tensor
        state = {"position": self.position, "epoch": self.epoch, "last_lr": self.last_lr,
                 "weight_optimizer": w_meta, "arch_optimizer": a_meta}
        return state, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        _load_optimizer_state(self.weight_optimizer, tensors, state["weight_optimizer"], "weight_optim")
        _load_optimizer_state(self.architect.optimizer, tensors, state["arch_optimizer"], "arch_optim")
        self.generator.set_state(tensors["rng.search"])
        self.order_tensor = tensors.get("epoch_order")
        self.position, self.epoch, self.last_lr = int(state["position"]), int(state["epoch"]), float(state["last_lr"])

    def result(self, history: list[dict[str, Any]]) -> SearchResult:
        from .plots import architecture_figure

        space = self.ctx.space
        last = history[-1] if history and history[-1].get("kind") in ("epoch", "final") else self._row("final")
        genotype = Genotype.from_dict(last["arch"]).to_dict()
        return SearchResult(arch=genotype, arch_file=space.arch_file, model_name=space.model_name,
                            overrides=space.size_overrides(), arch_key=space.arch_key, cost=last["cost"],
                            score=last["score"], description=space.describe(genotype),
                            figure=lambda: architecture_figure(space, genotype),
                            extra={"score_of": last.get("score_of"), "epochs": self.epoch,
                                   "stepped_down": last.get("stepped_down", [])})


__all__ = ["Architect", "DartsSearch", "MixedOp", "SearchCell", "SearchNetwork", "constrained_genotype",
           "derive_genotype", "edge_offset", "finite_difference_hvp"]

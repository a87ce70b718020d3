"""Optimisers, schedules, EMA and fine-tuning parameter groups, each against its paper's equation
computed by hand here (never against the code's own output)."""
from __future__ import annotations

import math

import pytest
import torch
from oracle import DEVICES
from torch import nn

from convnet import create_model, list_models
from convnet.models._registry import get_entry
from convnet.train.config import OptimConfig, ScheduleConfig
from convnet.train.ema import ModelEMA
from convnet.train.optim import build_optimizer, build_scheduler, layer_depths, lr_factor, param_groups
from convnet.train.optimizers import Lamb, Lars
from convnet.weights import load_tensors, save_tensors

STEPS = 3


class Tiny(nn.Module):
    """One 2-D weight (decays, trust-ratio adapted) and two 1-D parameters (neither)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(4, 3).double()
        self.norm = nn.LayerNorm(3).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))


def _grads(model: nn.Module, steps: int = STEPS, seed: int = 1, scale: float = 1.0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{n: scale * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}
            for _ in range(steps)]


def _run(opt: torch.optim.Optimizer, model: nn.Module, grads: list[dict[str, torch.Tensor]]) -> None:
    for step in grads:
        for n, p in model.named_parameters():
            p.grad = step[n].to(p.device)
        opt.step()


def _cfg(name: str, **kw) -> OptimConfig:
    cfg = OptimConfig(name=name, lr=0.1, momentum=0.9, weight_decay=0.05, betas=(0.8, 0.95), eps=1e-8)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


# ---------------------------------------------------------------- the papers' update equations

def sgd_reference(w, grads, lr, mu, wd, nesterov):
    """Momentum SGD with L2 (Polyak 1964); Nesterov in Sutskever et al. 2013's form rewritten
    on the current iterate (Bengio et al. 2013, eq. 7)."""
    v = torch.zeros_like(w)
    for g in grads:
        d = g + wd * w
        v = mu * v + d
        w = w - lr * (d + mu * v if nesterov else v)
    return w


def adam_reference(w, grads, lr, b1, b2, eps, wd, decoupled):
    """Kingma & Ba 2015, Algorithm 1 (L2 in the gradient), or Loshchilov & Hutter 2019,
    Algorithm 2 (decoupled: theta <- theta - (alpha * m_hat / (sqrt(v_hat) + eps) + lambda' theta)
    with torch's lambda' = lr * weight_decay)."""
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, 1):
        g = g if decoupled else g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step = lr * (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + eps)
        w = w - step - (lr * wd * w if decoupled else 0)
    return w


def lamb_reference(x, grads, lr, b1, b2, eps, wd, adapt):
    """You et al. 2019, Algorithm 2, phi(z) = z."""
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        r = (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + eps)
        u = r + wd * x
        ratio = torch.linalg.norm(x) / torch.linalg.norm(u) if adapt else 1.0
        x = x - lr * ratio * u
    return x


def lars_reference(w, grads, lr, mu, wd, eta, adapt, nesterov=False):
    """You, Gitman & Ginsburg 2017, Algorithm 1: local lr = eta ||w|| / (||g|| + beta ||w||),
    v <- m v + gamma * local_lr * (g + beta w), w <- w - v."""
    v = torch.zeros_like(w)
    for g in grads:
        local = eta * torch.linalg.norm(w) / (torch.linalg.norm(g) + wd * torch.linalg.norm(w)) if adapt else 1.0
        d = lr * local * (g + wd * w)
        v = mu * v + d
        w = w - (mu * v + d if nesterov else v)
    return w


@pytest.mark.parametrize("name,nesterov", [("sgd", False), ("sgd", True), ("adam", False), ("adamw", False),
                                           ("lamb", False), ("lars", False), ("lars", True)])
@pytest.mark.parametrize("device", DEVICES)
def test_optimizer_follows_its_paper(name, nesterov, device):
    model = Tiny().to(device)
    cfg = _cfg(name, nesterov=nesterov, trust_coefficient=0.02)
    if name == "lamb":
        cfg.eps = 1e-6
    start = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    grads = _grads(model)
    _run(build_optimizer(model, cfg), model, grads)
    for n, p in model.named_parameters():
        decays = p.ndim > 1  # weight decay and trust-ratio adaptation only on the 2-D weight
        wd = cfg.weight_decay if decays else 0.0
        gs = [g[n] for g in grads]
        if name == "sgd":
            want = sgd_reference(start[n], gs, cfg.lr, cfg.momentum, wd, nesterov)
        elif name in ("adam", "adamw"):
            want = adam_reference(start[n], gs, cfg.lr, *cfg.betas, cfg.eps, wd, decoupled=name == "adamw")
        elif name == "lamb":
            want = lamb_reference(start[n], gs, cfg.lr, *cfg.betas, cfg.eps, wd, adapt=decays)
        else:
            want = lars_reference(start[n], gs, cfg.lr, cfg.momentum, wd, cfg.trust_coefficient, decays, nesterov)
        torch.testing.assert_close(p.detach().cpu(), want, rtol=1e-10, atol=1e-12, msg=f"{name} {n}")
        assert not torch.equal(p.detach().cpu(), start[n])


def test_lamb_first_step_closed_form():
    """At t = 1 (eps = 0) m_hat = g and v_hat = g^2, so r = sign(g) and the step is
    lr * ||x|| * u / ||u|| with u = sign(g) + lambda x: every adapted layer moves by lr * ||x||."""
    x0 = torch.tensor([[3.0, -4.0], [1.0, 2.0]], dtype=torch.float64)
    g = torch.tensor([[0.5, 2.0], [-1e-3, 7.0]], dtype=torch.float64)
    lr, wd = 0.01, 0.1
    x = nn.Parameter(x0.clone())
    opt = Lamb([x], lr=lr, betas=(0.9, 0.999), eps=0.0, weight_decay=wd)
    x.grad = g.clone()
    opt.step()
    u = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) + wd * x0  # sign(g) + lambda x
    norm_x = math.sqrt(9 + 16 + 1 + 4)
    torch.testing.assert_close(x.detach(), x0 - lr * norm_x * u / torch.linalg.norm(u), rtol=1e-12, atol=1e-14)
    assert torch.linalg.norm(x.detach() - x0).item() == pytest.approx(lr * norm_x, rel=1e-12)


def test_lars_trust_ratio_makes_the_step_independent_of_the_gradient_scale():
    """Without momentum and decay, ||delta w|| = lr * eta * ||w|| whatever ||g|| is (§3)."""
    moves = []
    for scale in (1e-4, 1.0, 1e4):
        w0 = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # ||w|| = 5
        w = nn.Parameter(w0.clone())
        opt = Lars([w], lr=2.0, momentum=0.0, trust_coefficient=0.001)
        w.grad = scale * torch.tensor([[1.0, -2.0]], dtype=torch.float64)
        opt.step()
        delta = w.detach() - w0
        assert torch.linalg.norm(delta).item() == pytest.approx(2.0 * 0.001 * 5.0, rel=1e-12)
        moves.append(delta)
    torch.testing.assert_close(moves[0], moves[2])
    # Excluded (trust_ratio=False): plain SGD, the step scales with the gradient.
    b = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Lars([{"params": [b], "trust_ratio": False}], lr=2.0, momentum=0.0)
    b.grad = torch.tensor([3.0], dtype=torch.float64)
    opt.step()
    assert b.item() == pytest.approx(1.0 - 6.0)


def test_lars_local_lr_with_weight_decay_by_hand():
    """One step by hand: w = (3, 4), g = (0, 1), beta = 0.5, eta = 0.1, lr = 1:
    local = 0.1 * 5 / (1 + 2.5) = 1/7; v = (g + beta w) / 7 = (1.5, 3) / 7; w - v."""
    w = nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    opt = Lars([w], lr=1.0, momentum=0.9, weight_decay=0.5, trust_coefficient=0.1)
    w.grad = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[3 - 1.5 / 7, 4 - 3.0 / 7]], dtype=torch.float64))
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], torch.tensor([[1.5 / 7, 3.0 / 7]], dtype=torch.float64))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lamb", "lars"])
def test_no_weight_decay_on_1d_params(name):
    model = Tiny()
    opt = build_optimizer(model, _cfg(name, weight_decay=0.1))
    for g in opt.param_groups:
        assert all(p.ndim > 1 for p in g["params"]) == g["trust_ratio"]
        assert g["weight_decay"] == (0.1 if g["trust_ratio"] else 0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _run(opt, model, [{n: torch.zeros_like(p) for n, p in model.named_parameters()}])
    for n, p in model.named_parameters():
        # A zero gradient moves only what decays.
        assert torch.equal(p.detach(), before[n]) == (p.ndim == 1), n


@pytest.mark.parametrize("cls", [Lamb, Lars])
def test_state_is_tensors_and_round_trips_through_safetensors(cls, tmp_path):
    def make():
        model = Tiny()
        groups = param_groups(model, 0.01, 0.05)
        return model, (cls(groups, lr=0.05, weight_decay=0.01) if cls is Lamb else
                       cls(groups, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01))

    grads = _grads(Tiny(), steps=4, seed=3)
    ref_model, ref_opt = make()
    _run(ref_opt, ref_model, grads)

    model, opt = make()
    _run(opt, model, grads[:2])
    sd = opt.state_dict()
    flat = {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            assert isinstance(v, torch.Tensor), (pid, k, type(v))
            flat[f"{pid}.{k}"] = v
    save_tensors(flat, tmp_path / "optim.safetensors")
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    loaded = load_tensors(tmp_path / "optim.safetensors")
    state: dict[int, dict] = {}
    for key, v in loaded.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    model2, opt2 = make()
    with torch.no_grad():
        for n, p in model2.named_parameters():
            p.copy_(weights[n])
    opt2.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
    _run(opt2, model2, grads[2:])
    for (n, p), q in zip(model2.named_parameters(), ref_model.parameters()):
        assert torch.equal(p, q), n


# ---------------------------------------------------------------- schedules

def test_linear_warmup_curve():
    f = lr_factor(ScheduleConfig(name="constant", warmup_epochs=2, warmup_start=0.2), 1.0, 100, 5)
    assert [f(k) for k in range(13)] == pytest.approx([0.2 + 0.8 * k / 10 for k in range(10)] + [1, 1, 1])
    # Fractional warm-up epochs round to whole steps: 0.5 epoch of 7 steps = 4 steps (3.5 rounds to 4).
    g = lr_factor(ScheduleConfig(name="constant", warmup_epochs=0.5, warmup_start=0.0), 1.0, 100, 7)
    assert [g(k) for k in range(5)] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_multistep_values():
    cfg = ScheduleConfig(name="multistep", warmup_epochs=0, milestones=(2, 5), gamma=0.5)
    f = lr_factor(cfg, 1.0, 100, 10)
    assert [f(s) for s in (0, 19, 20, 49, 50, 99)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    warm = lr_factor(ScheduleConfig(name="multistep", warmup_epochs=1, warmup_start=0.1, milestones=(2,)), 1.0,
                     100, 10)
    assert [warm(s) for s in (0, 5, 10, 19, 20)] == pytest.approx([0.1, 0.55, 1, 1, 0.1])
    floor = lr_factor(ScheduleConfig(name="multistep", warmup_epochs=0, milestones=(1, 2, 3), gamma=0.5,
                                     min_lr=0.03), 0.1, 100, 10)
    assert [floor(s) for s in (10, 20, 30)] == pytest.approx([0.5, 0.3, 0.3])  # 0.125 < 0.03 / 0.1
    with pytest.raises(ValueError, match="needs schedule.milestones"):
        lr_factor(ScheduleConfig(name="multistep"), 1.0, 100, 10)
    with pytest.raises(ValueError, match="increasing"):
        lr_factor(ScheduleConfig(name="multistep", milestones=(5, 2)), 1.0, 100, 10)


def test_poly_values():
    cfg = ScheduleConfig(name="poly", warmup_epochs=1, warmup_start=0.0, power=2.0, min_lr=0.1)
    f = lr_factor(cfg, 1.0, total_steps=110, steps_per_epoch=10)
    # After 10 warm-up steps t = (step - 10) / 100: 0.1 + 0.9 * (1 - t)^2.
    assert [f(s) for s in (5, 10, 60, 85, 110, 200)] == pytest.approx([0.5, 1, 0.325, 0.15625, 0.1, 0.1])
    lin = lr_factor(ScheduleConfig(name="poly", warmup_epochs=0, power=1.0), 1.0, 40, 10)
    assert [lin(s) for s in (0, 10, 30, 40)] == pytest.approx([1, 0.75, 0.25, 0])
    with pytest.raises(ValueError, match="power > 0"):
        lr_factor(ScheduleConfig(name="poly", power=0.0), 1.0, 40, 10)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_factor(ScheduleConfig(name="linear"), 1.0, 40, 10)


def test_scheduler_keeps_the_ratio_between_groups():
    model = create_model("resnet18", **get_entry("resnet18").extra["tiny"])
    opt = build_optimizer(model, _cfg("sgd", lr=0.4, backbone_lr_scale=0.1))
    sched = build_scheduler(opt, ScheduleConfig(name="poly", warmup_epochs=1, warmup_start=0.5, power=1.0),
                            total_steps=20, steps_per_epoch=4)
    for k in range(1, 21):
        opt.step()
        sched.step()
        f = 0.5 + 0.5 * k / 4 if k < 4 else 1 - (k - 4) / 16
        for g in opt.param_groups:
            head = any(p is model.head.fc.weight or p is model.head.fc.bias for p in g["params"])
            assert g["lr"] == pytest.approx(0.4 * (1.0 if head else 0.1) * f, abs=1e-15), k


# ---------------------------------------------------------------- fine-tuning groups

def _lr_of(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    by_id = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    counts = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(counts) == len(set(counts)), "a parameter is in two groups"
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


def test_backbone_lr_scale():
    model = create_model("resnet18", **get_entry("resnet18").extra["tiny"])
    model.stem.requires_grad_(False)
    lrs = _lr_of(build_optimizer(model, _cfg("adamw", lr=1e-3, backbone_lr_scale=0.1)), model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(lrs) == sorted(trainable) and not any(n.startswith("stem.") for n in lrs)
    for n, lr in lrs.items():
        assert lr == pytest.approx(1e-3 if n in ("head.fc.weight", "head.fc.bias") else 1e-4), n


def _unit_depths(model: nn.Module, units: dict[str, int]) -> dict[str, int]:
    """Expected depth of every parameter from a hand-written {name prefix: depth} table."""
    out = {}
    for n, _ in model.named_parameters():
        match = [d for u, d in units.items() if n == u or n.startswith(u + ".")]
        assert len(match) == 1, n
        out[n] = match[0]
    return out


def test_layer_decay_resnet18_and_convnext_tiny():
    resnet = create_model("resnet18", **get_entry("resnet18").extra["tiny"])  # layers (1, 1, 1, 1)
    want = _unit_depths(resnet, {"stem": 5, "stages.0.blocks.0": 4, "stages.1.blocks.0": 3,
                                 "stages.2.blocks.0": 2, "stages.3.blocks.0": 1, "head": 0})
    lrs = _lr_of(build_optimizer(resnet, _cfg("sgd", lr=1.0, layer_decay=0.5)), resnet)
    assert lrs == pytest.approx({n: 0.5 ** d for n, d in want.items()})

    convnext = create_model("convnext_tiny", **get_entry("convnext_tiny").extra["tiny"])  # depths (1, 1, 1, 1)
    want = _unit_depths(convnext, {"stem": 8, "stages.0.blocks.0": 7, "stages.1.downsample": 6,
                                   "stages.1.blocks.0": 5, "stages.2.downsample": 4, "stages.2.blocks.0": 3,
                                   "stages.3.downsample": 2, "stages.3.blocks.0": 1, "head": 0})
    assert layer_depths(convnext) == want
    # Both knobs multiply: head lr, backbone lr * 0.1 * 0.8 ** depth.
    lrs = _lr_of(build_optimizer(convnext, _cfg("lamb", lr=1.0, layer_decay=0.8, backbone_lr_scale=0.1)), convnext)
    assert lrs == pytest.approx({n: (1.0 if d == 0 else 0.1) * 0.8 ** d for n, d in want.items()})


def test_layer_depths_of_other_layouts():
    """ViT's embeddings are the stem; AlexNet's convolutions (stages.i.convk, several per stage)
    and LeNet-5's layers (features.c1 ...) are one level each."""
    vit = create_model("vit_s_16", **get_entry("vit_s_16").extra["tiny"])  # depth 2
    want = _unit_depths(vit, {"class_token": 4, "patch_embed": 4, "pos_embed": 4, "blocks.0": 3, "blocks.1": 2,
                              "norm": 1, "head": 0})
    assert layer_depths(vit) == want
    alexnet = create_model("alexnet", **get_entry("alexnet").extra["tiny"])
    want = _unit_depths(alexnet, {"stages.0.conv1": 5, "stages.1.conv2": 4, "stages.2.conv3": 3,
                                  "stages.2.conv4": 2, "stages.2.conv5": 1, "head": 0})
    assert layer_depths(alexnet) == want
    lenet = create_model("lenet5")
    want = _unit_depths(lenet, {"features.c1": 5, "features.s2": 4, "features.c3": 3, "features.s4": 2,
                                "features.c5": 1, "head": 0})
    assert layer_depths(lenet) == want


def test_layer_depths_hold_for_every_registered_family():
    """head 0; every other parameter deeper; depth never grows along the forward order; the stem
    deepest; distinct blocks on distinct levels."""
    for name in list_models(task="classify"):
        model = create_model(name, **get_entry(name).extra.get("tiny", {}))
        depths = layer_depths(model)
        names = [n for n, _ in model.named_parameters()]
        assert list(depths) == names, name
        body = [depths[n] for n in names if not n.startswith("head.")]
        assert all(depths[n] == 0 for n in names if n.startswith("head.")), name
        assert min(body) == 1 and body == sorted(body, reverse=True), name
        assert all(depths[n] == max(body) for n in names if n.startswith("stem.")), name
        blocks = {}
        for n in names:
            parts = n.split(".")
            if "blocks" in parts and parts[parts.index("blocks") + 1].isdigit():
                blocks.setdefault(".".join(parts[:parts.index("blocks") + 2]), set()).add(depths[n])
        assert all(len(d) == 1 for d in blocks.values()), name
        assert len({next(iter(d)) for d in blocks.values()}) == len(blocks), name


def test_fine_tuning_arguments_are_checked():
    model = Tiny()
    with pytest.raises(ValueError, match="needs a model with a `head`"):
        param_groups(model, 0.0, backbone_lr_scale=0.1)
    with pytest.raises(ValueError, match="layer_decay must be in"):
        param_groups(model, 0.0, layer_decay=0.0)
    with pytest.raises(ValueError, match="unknown optimizer 'bogus'"):
        build_optimizer(model, _cfg("bogus"))


# ---------------------------------------------------------------- EMA

class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3).double()
        self.bn = nn.BatchNorm1d(3).double()
        self.head = nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)).mean(-1))


def test_ema_closed_form_after_k_updates():
    torch.manual_seed(0)
    model, d, k = Net(), 0.7, 5
    ema = ModelEMA(model, decay=d)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    w = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    for _ in range(k):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 2, 8, dtype=torch.float64))  # moves the BN running stats
        w.append({n: p.detach().clone() for n, p in model.named_parameters()})
        ema.update(model)
    for n, e in ema.module.named_parameters():
        want = d ** k * w[0][n] + sum((1 - d) * d ** (k - i) * w[i][n] for i in range(1, k + 1))
        torch.testing.assert_close(e, want, rtol=1e-12, atol=1e-12)
    for (n, b), (_, mb) in zip(ema.module.named_buffers(), model.named_buffers()):
        assert torch.equal(b, mb), n  # buffers copied, not averaged
    assert int(ema.module.bn.num_batches_tracked) == k


def test_ema_decay_warmup():
    model = Net()
    ema = ModelEMA(model, decay=0.5, warmup=True)
    w0 = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    ema.update(model)  # n = 0: min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.module.head.weight, 0.1 * w0 + 0.9, rtol=1e-12, atol=1e-12)
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.update(model)  # n = 1: 2/11
    torch.testing.assert_close(ema.module.head.weight, 2 / 11 * (0.1 * w0 + 0.9) + 9 / 11, rtol=1e-12, atol=1e-12)
    ema.updates = 100
    assert ema.current_decay() == 0.5  # min(0.5, 101/110)
    assert ModelEMA(model, decay=0.5).current_decay() == 0.5  # warm-up is off by default


def test_ema_state_dict_round_trip_is_deterministic(tmp_path):
    torch.manual_seed(1)
    model = Net()
    a = ModelEMA(model, decay=0.9)
    a.update(nn.DataParallel(model))  # wrappers are unwrapped
    sd = a.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    save_tensors(sd, tmp_path / "ema.safetensors")
    b = ModelEMA(Net(), decay=0.9)
    b.load_state_dict(load_tensors(tmp_path / "ema.safetensors"))
    assert b.updates == 1
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-2.0)
    a.update(model)
    b.update(model)
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()):
        assert torch.equal(x, y)
    with pytest.raises(KeyError, match="unexpected keys"):
        b.load_state_dict({**sd, "stray": torch.zeros(1)})

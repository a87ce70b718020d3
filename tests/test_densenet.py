"""DenseNet (Huang et al. 2017): torchvision/timm checkpoints, the channel arithmetic of Tables 1
and 2, feature reuse by concatenation, the exact CIFAR parameter counts, memory-efficient mode."""
import time

import pytest
import torch
from conftest import tiny_model
from oracle import (
    DEVICES,
    assert_loads_same,
    randomize_batchnorm,
    timm,
    torchvision_models,
)
from torch import nn

from convnet import create_model, model_info
from convnet.models import get_entry
from convnet.models.densenet import DenseNetSpec
from convnet.weights import load_pretrained

# --- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_torchvision_densenet121_loads_same(device, tmp_path):
    tv = torchvision_models()
    assert_loads_same("densenet121", tv.densenet121(), tmp_path, device=device)


def test_torchvision_densenet161_loads_same(tmp_path):
    # Growth 48 and a 96-map stem: the map must not assume k=32.
    tv = torchvision_models()
    assert_loads_same("densenet161", tv.densenet161(), tmp_path)


def test_timm_densenet121_loads_same(tmp_path):
    assert_loads_same("densenet121", timm().create_model("densenet121"), tmp_path)


def _old_style(state):
    """The published torchvision .pth layout: ``norm.1`` / ``conv.2`` keys (dots in module
    names, before torch forbade them) and no ``num_batches_tracked`` counters."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for unit in ("norm1", "norm2", "conv1", "conv2"):
            key = key.replace(f".{unit}.", f".{unit[:-1]}.{unit[-1]}.") if ".denselayer" in key else key
        out[key] = value
    return out


def test_torchvision_old_style_keys_load_same(tmp_path):
    tv = torchvision_models()
    theirs = randomize_batchnorm(tv.densenet121()).eval()
    state = _old_style(theirs.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in state
    assert "features.denseblock4.denselayer16.conv.2.weight" in state
    assert not any(k.endswith("num_batches_tracked") for k in state)
    torch.save(state, tmp_path / "densenet121-old.pth")
    ours = load_pretrained(create_model("densenet121"), tmp_path / "densenet121-old.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert int(ours.stages[0].blocks[0].bottleneck.norm.num_batches_tracked) == 0


def _torchvision_cifar_densenet(tv_module, growth_rate, depths, stem_width, num_classes=10):
    """torchvision's DenseNet class with the CIFAR stem of the authors' code: one bare 3x3 conv."""
    model = tv_module.densenet.DenseNet(growth_rate=growth_rate, block_config=depths,
                                        num_init_features=stem_width, num_classes=num_classes)
    model.features.conv0 = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
    for name in ("norm0", "relu0", "pool0"):
        setattr(model.features, name, nn.Identity())
    return model


def test_densenet_bc100_cifar_matches_torchvision_blocks(tmp_path):
    tv = torchvision_models()
    theirs = _torchvision_cifar_densenet(tv, 12, (16, 16, 16), 24)
    ours = assert_loads_same("densenet_bc100_cifar", theirs, tmp_path, input_size=32)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 769_162


# --- channel arithmetic (Table 1, Table 2) ---------------------------------------------------

def _stage_shapes(model, size):
    shapes = {}
    hooks = [s.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(("block", i), o.shape))
             for i, s in enumerate(model.stages)]
    hooks += [s.transition.register_forward_hook(lambda m, a, o, i=i: shapes.__setitem__(("transition", i), o.shape))
              for i, s in enumerate(model.stages) if i > 0]
    with torch.no_grad():
        model.eval()(torch.randn(1, model.in_channels, size, size))
    for h in hooks:
        h.remove()
    return shapes


def _expected_channels(stem_width, growth_rate, depths, theta=0.5):
    """Eq. 2 and §3: a block of n layers adds n*k maps; a transition keeps floor(theta * m)."""
    out, channels = {}, stem_width
    for i, n in enumerate(depths):
        if i:
            channels = int(theta * channels)
            out[("transition", i)] = channels
        channels += n * growth_rate
        out[("block", i)] = channels
    return out


def test_densenet121_channels_table1():
    model = create_model("densenet121")
    shapes = _stage_shapes(model, 64)
    channels = {k: v[1] for k, v in shapes.items()}
    assert channels == _expected_channels(64, 32, (6, 12, 24, 16))
    # Table 1 with k=32: 64 + 6*32 = 256 -> 128, +12*32 = 512 -> 256, +24*32 = 1024 -> 512, +16*32.
    assert [channels[("block", i)] for i in range(4)] == [256, 512, 1024, 1024]
    assert [channels[("transition", i)] for i in (1, 2, 3)] == [128, 256, 512]
    # Output sizes 56, 28, 14, 7 at 224, i.e. reductions 4, 8, 16, 32 (here at 64: 16, 8, 4, 2).
    assert [shapes[("block", i)][-1] for i in range(4)] == [16, 8, 4, 2]
    assert [f.channels for f in model.feature_info] == [256, 512, 1024, 1024]
    assert [f.reduction for f in model.feature_info] == [4, 8, 16, 32]
    assert model.head.fc.in_features == 1024


def test_densenet_bc100_cifar_channels():
    model = create_model("densenet_bc100_cifar", in_channels=1)
    channels = {k: v[1] for k, v in _stage_shapes(model, 32).items()}
    assert channels == _expected_channels(24, 12, (16, 16, 16))
    # 24 + 16*12 = 216 -> 108, + 192 = 300 -> 150, + 192 = 342.
    assert [channels[("block", i)] for i in range(3)] == [216, 300, 342]
    assert [channels[("transition", i)] for i in (1, 2)] == [108, 150]
    assert [f.reduction for f in model.feature_info] == [1, 2, 4]
    assert all(len(s.blocks) == 16 for s in model.stages)  # (100 - 4) / 6 bottleneck layers
    assert model.num_classes == 10 and model.head.fc.out_features == 10


def test_densenet40_cifar_has_no_bottleneck_or_compression():
    model = create_model("densenet40_cifar")
    channels = {k: v[1] for k, v in _stage_shapes(model, 32).items()}
    assert channels == _expected_channels(16, 12, (12, 12, 12), theta=1.0)
    assert all(b.bottleneck is None for s in model.stages for b in s.blocks)


# --- feature reuse --------------------------------------------------------------------------

@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_concatenation_reuses_earlier_features(spatial_dims):
    """A dense block's output starts with its input, untouched, followed by each layer's k maps
    in order: the later layers (and the classifier) see the earlier maps themselves."""
    model = tiny_model("densenet_bc100_cifar", spatial_dims, depths=(3, 3, 3)).eval()
    k = model.spec.growth_rate
    for stage in model.stages:
        seen = {}
        hooks = [stage.transition.register_forward_hook(lambda m, a, o, s=seen: s.__setitem__("in", o.clone()))]
        hooks += [b.register_forward_hook(lambda m, a, o, j=j, s=seen: s.__setitem__(j, o.clone()))
                  for j, b in enumerate(stage.blocks)]
        hooks.append(stage.register_forward_hook(lambda m, a, o, s=seen: s.__setitem__("out", o)))
        with torch.no_grad():
            model(torch.randn(2, 2, *([16] * spatial_dims)))
        for h in hooks:
            h.remove()
        c = seen["in"].shape[1]
        assert torch.equal(seen["out"][:, :c], seen["in"])
        for j in range(len(stage.blocks)):
            assert torch.equal(seen["out"][:, c + j * k:c + (j + 1) * k], seen[j])
        assert seen["out"].shape[1] == c + len(stage.blocks) * k


def test_each_layer_sees_every_earlier_map():
    """Eq. 2: the last layer of a block depends on the block input through the direct path too:
    perturbing only the first input map changes the last layer's bottleneck input there."""
    model = tiny_model("densenet121", 2, depths=(4, 1, 1, 1)).eval()
    stage = model.stages[0]
    inputs = {}
    stage.blocks[-1].bottleneck.register_forward_hook(lambda m, a, o: inputs.__setitem__("x", a[0]))
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        stage(x)
        a = inputs["x"].clone()
        stage(x + torch.eye(8)[0].view(1, 8, 1, 1))  # move the first input map only
        b = inputs["x"]
    assert a.shape[1] == 8 + 3 * model.spec.growth_rate
    torch.testing.assert_close(b[:, :1] - a[:, :1], torch.ones_like(a[:, :1]))
    assert torch.equal(a[:, 1:8], b[:, 1:8])


# --- parameter counts -------------------------------------------------------------------------

def _derived_params(spec: DenseNetSpec, in_channels=3, num_classes=10):
    """Layer by layer, from §3 and Table 2: bias-free convolutions, two parameters per BN map."""
    k, b = spec.growth_rate, spec.bn_size
    kernel = 9  # 3x3
    total = in_channels * spec.stem_width * (49 if spec.stem == "imagenet" else kernel)
    total += 2 * spec.stem_width if spec.stem == "imagenet" else 0
    channels = spec.stem_width
    for i, n in enumerate(spec.depths):
        if i:
            out = int(spec.compression * channels)
            total += 2 * channels + channels * out
            channels = out
        for j in range(n):
            c = channels + j * k
            if b:
                total += 2 * c + c * b * k + 2 * b * k + b * k * k * kernel
            else:
                total += 2 * c + c * k * kernel
        channels += n * k
    return total + 2 * channels + channels * num_classes + num_classes


@pytest.mark.parametrize("name,paper_millions", [
    ("densenet_bc100_cifar", 0.8), ("densenet_bc250_cifar", 15.3), ("densenet40_cifar", 1.0)])
def test_cifar_counts_derived_and_match_table2(name, paper_millions):
    info = model_info(name)
    spec = get_entry(name).spec
    assert info["params"] == _derived_params(spec) == info["reference_params"]
    assert round(info["params"] / 1e6, 1) == paper_millions  # Table 2 rounds to 0.1M


def test_derivation_agrees_with_torchvision_on_imagenet():
    for name, params in [("densenet121", 7_978_856), ("densenet161", 28_681_000)]:
        assert _derived_params(get_entry(name).spec, num_classes=1000) == params == model_info(name)["params"]


# --- memory-efficient mode, options, errors ------------------------------------------------------

def _saved_numel(model, x):
    total = [0]

    def pack(t):
        total[0] += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, total[0]


def test_memory_efficient_same_results_less_saved():
    torch.manual_seed(0)
    plain = tiny_model("densenet_bc100_cifar", 2, depths=(6, 6, 6)).train()
    efficient = tiny_model("densenet_bc100_cifar", 2, depths=(6, 6, 6), memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 2, 16, 16)
    out_p, saved_p = _saved_numel(plain, x)
    out_e, saved_e = _saved_numel(efficient, x)
    torch.testing.assert_close(out_e, out_p)
    assert saved_e < 0.8 * saved_p, (saved_e, saved_p)
    out_p.square().sum().backward()
    out_e.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    # The recomputation in backward must not move the running statistics a second time.
    for (name, a), b in zip(plain.state_dict().items(), efficient.state_dict().values()):
        torch.testing.assert_close(b, a, msg=name)


def test_dense_dropout_and_head_dropout():
    model = tiny_model("densenet121", 2, dense_drop_rate=0.3, drop_rate=0.2)
    assert model.stages[0].blocks[0].drop.p == 0.3
    assert model.head.drop.p == 0.2


@pytest.mark.parametrize("override,match", [
    ({"compression": 0.0}, "compression"), ({"compression": 1.5}, "compression"),
    ({"stem": "tiny"}, "stem"), ({"depths": ()}, "depths"), ({"growth_rate": 0}, "growth_rate")])
def test_bad_spec_is_named(override, match):
    with pytest.raises(ValueError, match=match):
        create_model("densenet_bc100_cifar", **override)


def test_cam_layer_is_the_final_activated_map():
    model = tiny_model("densenet121", 2).eval()
    grabbed = {}
    dict(model.named_modules())[model.cam_layer].register_forward_hook(lambda m, a, o: grabbed.__setitem__("x", o))
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), grabbed["x"])
    assert (grabbed["x"] >= 0).all()


@pytest.mark.slow
def test_densenet_bc100_cifar_batch32_forward_backward_on_cpu():
    """The network the lead trains on the digits: 1 channel, 10 classes, 32x32, batch 32."""
    model = create_model("densenet_bc100_cifar", in_channels=1, num_classes=10).train()
    x, y = torch.randn(32, 1, 32, 32), torch.randint(0, 10, (32,))
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    print(f"densenet_bc100_cifar batch 32 forward+backward on CPU: {elapsed:.2f} s")

"""Inception family: torchvision checkpoints load, auxiliary heads, and the papers' tables."""
import pytest
import torch
from torch import nn

from conftest import tiny_model
from convnet import create_model
from convnet.models.inception import Concat
from convnet.weights import load_pretrained
from oracle import DEVICES, assert_loads_same, randomize_batchnorm, torchvision_models

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _tv(name: str, **kwargs) -> nn.Module:
    tv = torchvision_models()
    return getattr(tv, name)(weights=None, init_weights=True, **{"transform_input": False, **kwargs})


def _block_outputs(model: nn.Module, size: int) -> list[torch.Size]:
    """Output shapes of every Inception module, in order, from a forward on the meta device."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, a, o: shapes.append(o.shape))
             for stage in model.stages for m in stage.blocks if isinstance(m, Concat)]
    with torch.no_grad():
        model(torch.empty(1, model.in_channels, *[size] * model.spatial_dims, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


def _meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw).eval()


# ---- torchvision checkpoints ------------------------------------------------------------------

CASES = [(True, False), (True, True), (False, False)]  # (checkpoint has aux, our model has aux)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("theirs_aux,ours_aux", CASES)
@pytest.mark.parametrize("name,tv_name,size", [("googlenet", "googlenet", 64), ("inception_v3", "inception_v3", 75)])
def test_torchvision_checkpoint_loads(name, tv_name, size, theirs_aux, ours_aux, device, tmp_path):
    theirs = _tv(tv_name, aux_logits=theirs_aux).eval()
    with torch.no_grad():  # in eval mode torchvision returns the logits alone, as ours
        assert type(theirs(torch.randn(1, 3, size, size))) is torch.Tensor
    ours = assert_loads_same(name, theirs, tmp_path, input_size=size, device=device, aux_logits=ours_aux)
    assert any(k.startswith("aux") for k in ours.state_dict()) == ours_aux


@pytest.mark.parametrize("name,tv_name", [("googlenet", "googlenet"), ("inception_v3", "inception_v3")])
def test_checkpoint_without_aux_cannot_fill_aux_heads(name, tv_name, tmp_path):
    torch.save(_tv(tv_name, aux_logits=False).state_dict(), tmp_path / "theirs.pth")
    with pytest.raises(ValueError, match=r"missing keys: aux"):
        load_pretrained(create_model(name, aux_logits=True), tmp_path / "theirs.pth")


def test_googlenet_aux_logits_equal_torchvision_in_training(tmp_path):
    theirs = randomize_batchnorm(_tv("googlenet", aux_logits=True))
    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    ours = load_pretrained(create_model("googlenet", aux_logits=True), tmp_path / "theirs.pth")
    for model in (theirs, ours):  # batch statistics in BN, but no random dropout
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, aux2, aux1 = theirs(x)  # torchvision's GoogLeNetOutputs order
        ours_logits, ours_aux1, ours_aux2 = ours.forward_aux(x)
    for a, b in ((ours_logits, logits), (ours_aux1, aux1), (ours_aux2, aux2)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inception_v3_aux_head_equals_torchvision(tmp_path):
    theirs = randomize_batchnorm(_tv("inception_v3", aux_logits=True)).eval()
    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    ours = load_pretrained(create_model("inception_v3", aux_logits=True), tmp_path / "theirs.pth").eval()
    feats = torch.randn(2, 768, 17, 17)  # what Mixed_6e gives at a 299 input
    with torch.no_grad():
        torch.testing.assert_close(ours.aux(feats), theirs.AuxLogits(feats), rtol=1e-4, atol=1e-5)
    assert ours.aux_taps == {"aux": (2, 4)}  # after stages[2].blocks[4] = Mixed_6e


def test_transform_input_is_default_cfg_normalisation(tmp_path):
    """torchvision's pretrained googlenet converts ImageNet-normalised input to mean/std 0.5
    inside forward; ours gets the same first-layer input from its default_cfg normalisation."""
    theirs = randomize_batchnorm(_tv("googlenet", aux_logits=False, transform_input=True)).eval()
    torch.save(theirs.state_dict(), tmp_path / "theirs.pth")
    ours = load_pretrained(create_model("googlenet"), tmp_path / "theirs.pth").eval()
    image = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(ours.default_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ours.default_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = theirs((image - IMAGENET_MEAN) / IMAGENET_STD)
        actual = ours((image - mean) / std)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_parameter_counts_with_aux_heads():
    # torchvision's published num_params of inception_v3 counts the aux head.
    assert sum(p.numel() for p in _meta_model("inception_v3", aux_logits=True).parameters()) == 27_161_264
    theirs = _tv("googlenet", aux_logits=True)
    assert (sum(p.numel() for p in _meta_model("googlenet", aux_logits=True).parameters())
            == sum(p.numel() for p in theirs.parameters()))


# ---- auxiliary heads --------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_googlenet_aux_heads_in_training(spatial_dims):
    model = tiny_model("googlenet", spatial_dims, in_channels=2, num_classes=5, aux_logits=True).train()
    x = torch.randn(2, 2, *[32] * spatial_dims)
    out = model(x)
    assert type(out) is torch.Tensor and out.shape == (2, 5)  # forward: logits only
    logits, aux1, aux2 = model.forward_aux(x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)
    (logits.square().mean() + 0.3 * (aux1.square().mean() + aux2.square().mean())).backward()
    for head in (model.aux1, model.aux2):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    model.reset_classifier(3)
    assert all(o.shape == (2, 3) for o in model.forward_aux(x))


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_inception_v3_aux_head_in_training(spatial_dims):
    # The aux head's unpadded 5x5 needs the 17x17 grid of a 299 input (3-D: 299^3, too big here).
    model = tiny_model("inception_v3", spatial_dims, in_channels=2, num_classes=5, aux_logits=True).train()
    x = torch.randn(2, 2, *[299] * spatial_dims)
    assert model(x).shape == (2, 5)
    logits, aux = model.forward_aux(x)
    assert logits.shape == aux.shape == (2, 5)
    aux.square().mean().backward()
    assert model.aux.conv0.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["googlenet", "inception_v3", "inception_bn"])
def test_without_aux_heads(name):
    model = tiny_model(name, 2)
    assert not [k for k in model.state_dict() if k.startswith("aux")]
    with pytest.raises(ValueError, match="no auxiliary heads"):
        model.forward_aux(torch.randn(1, 2, 75, 75))


# ---- the papers' tables -----------------------------------------------------------------------


def test_googlenet_table1_module_outputs():
    """Table 1, "output size" of inception 3a-5b at 224: depth and grid."""
    model = _meta_model("googlenet")
    depths = [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    grids = [28, 28, 14, 14, 14, 14, 14, 7, 7]
    assert [tuple(s[1:]) for s in _block_outputs(model, 224)] == [(c, g, g) for c, g in zip(depths, grids)]
    # The branches' widths add up to the module's output (#1x1 + #3x3 + #5x5 + pool proj).
    blocks = [b for stage in model.stages for b in stage.blocks]
    sums = [sum([b.branch1x1.conv.out_channels, b.branch3x3[-1].conv.out_channels,
                 b.branch5x5[-1].conv.out_channels, b.branch_pool[-1].conv.out_channels]) for b in blocks]
    assert sums == [b.out_channels for b in blocks] == depths
    assert [f.channels for f in model.feature_info] == [192, 480, 832, 1024]


def test_googlenet_5x5_branch_option():
    # torchvision's "5x5" branch is a 3x3 (pytorch/vision#906); the paper's is selectable.
    paper, tv = _meta_model("googlenet", branch5x5_kernel=5), _meta_model("googlenet")
    assert paper.stages[0].blocks[0].branch5x5[1].conv.kernel_size == (5, 5)
    assert tv.stages[0].blocks[0].branch5x5[1].conv.kernel_size == (3, 3)
    # Each 5x5 adds 25 - 9 weights per (reduce, output) channel pair: Table 1's #5x5 reduce, #5x5.
    rows = [r for stage in tv.spec.stages for r in stage]
    extra = sum(r[3] * r[4] * 16 for r in rows)
    assert sum(p.numel() for p in paper.parameters()) - sum(p.numel() for p in tv.parameters()) == extra
    assert _block_outputs(paper, 224)[-1][1:] == (1024, 7, 7)


def test_bn_inception_figure5_module_outputs():
    """Figure 5 (Ioffe & Szegedy 2015), "output size" of inception 3a-5b at 224."""
    model = _meta_model("inception_bn")
    depths = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    grids = [28, 28, 14, 14, 14, 14, 14, 7, 7, 7]
    assert [tuple(s[1:]) for s in _block_outputs(model, 224)] == [(c, g, g) for c, g in zip(depths, grids)]
    # Two 3x3 in place of GoogLeNet's 5x5; 3c and 4e stride in both 3x3 branches, no 1x1 branch.
    for b in (model.stages[1].blocks[0], model.stages[2].blocks[0]):
        assert not hasattr(b, "branch1x1")
        assert b.branch3x3[1].conv.stride == b.branch3x3dbl[2].conv.stride == (2, 2)
    assert all(isinstance(m, nn.BatchNorm2d) for n, m in model.named_modules() if n.endswith(".norm"))
    assert isinstance(model.stages[2].blocks[2].branch_pool[0].pool, nn.MaxPool2d)  # 5b: max pool
    assert isinstance(model.stages[2].blocks[1].branch_pool[0].pool, nn.AvgPool2d)  # 5a: average


def test_inception_v3_table1_grids():
    """Table 1 (Szegedy et al. 2016): 35x35x288 after the Figure 5 modules, 17x17x768 after the
    Figure 6 modules, 8x8x1280 after the reduction, 8x8x2048 at the end, from a 299 input."""
    shapes = [tuple(s[1:]) for s in _block_outputs(_meta_model("inception_v3"), 299)]
    assert shapes[2] == (288, 35, 35) and shapes[7] == (768, 17, 17)
    assert shapes[8] == (1280, 8, 8) and shapes[10] == (2048, 8, 8)


@pytest.mark.parametrize("spatial_dims,kernels,mixed7c", [
    (1, [(7,)], 1280),
    (2, [(1, 7), (7, 1)], 2048),
    (3, [(1, 1, 7), (1, 7, 1), (7, 1, 1)], 2816),
])
def test_inception_v3_factorisation_per_axis(spatial_dims, kernels, mixed7c):
    model = _meta_model("inception_v3", spatial_dims=spatial_dims)
    branch = model.stages[2].blocks[1].branch7x7  # Mixed_6b: 1x1, then a 7x7 one axis at a time
    assert [m.conv.kernel_size for m in branch[1:]] == kernels
    dbl = model.stages[2].blocks[1].branch7x7dbl  # torchvision's order there: 7x1 first
    assert [m.conv.kernel_size for m in dbl[1:]] == list(reversed(kernels)) * 2
    parallel = model.stages[3].blocks[1].branch3x3[1]  # Figure 7: one 1-D 3-kernel per axis
    per_axis = [tuple(3 if k == 7 else 1 for k in ks) for ks in kernels]
    assert [m.conv.kernel_size for m in parallel.children()] == per_axis
    assert model.feature_info[-1].channels == mixed7c


def test_inception_v3_smallest_input():
    model = tiny_model("inception_v3", 2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 75, 75)).shape == (1, 5)
        # The model names its minimum before a layer fails (the layers' own failure at 74 is
        # tests/test_model_input_checks.py's test_declared_minimum_is_the_smallest_...).
        with pytest.raises(ValueError, match=r"at least \(75, 75\)"):
            model(torch.randn(1, 2, 74, 74))


def test_bn_inception_runs_at_odd_sizes():
    # Its stride-2 "same" pools stay aligned with the stride-2, pad-1 convolutions of 3c and 4e.
    model = tiny_model("inception_bn", 2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 299, 299)).shape == (1, 5)

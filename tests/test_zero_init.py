"""Residual blocks know how to start as the identity (``zero_init_last``, timm's pattern), and
ResNet's ``zero_init_residual`` is nothing but calling it on every block that has it."""
import pytest
import torch
from conftest import input_size, tiny_model
from torch import nn

# One model per block kind: ResNet's basic and bottleneck blocks (with SE, grouped), the
# pre-activation units, ConvNeXt's blocks (V1, V2, the path's bottleneck), the inverted residuals
# of EfficientNet and MobileNet, Inception-ResNet's and Xception's modules, the transformer blocks.
MODELS = ["resnet18", "resnet50", "seresnet50", "resnext50_32x4d", "preact_resnet18", "preact_resnet50",
          "wrn28_10_cifar", "convnext_tiny", "convnextv2_atto", "convnext_path_00_resnet50", "efficientnet_b0",
          "efficientnet_v2_s", "mobilenet_v2", "mobilenet_v3_large", "inception_resnet_v2", "xception",
          "vit_s_16", "coatnet_0"]
# Tiny models have one block per stage; where every first block changes the shape, a second
# block in some stage keeps it.
TWO_BLOCKS = {"resnet50": dict(layers=(2, 1, 1, 1)), "seresnet50": dict(layers=(2, 1, 1, 1)),
              "resnext50_32x4d": dict(layers=(2, 1, 1, 1)), "preact_resnet50": dict(layers=(2, 1, 1, 1)),
              "convnext_path_00_resnet50": dict(depths=(2, 1, 1, 1)), "coatnet_0": dict(depths=(2, 1, 1, 1, 2))}


def _block_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, tuple]]:
    """(block, its input arguments) for every module with zero_init_last, from one forward pass."""
    seen, handles = [], []
    for m in model.modules():
        if hasattr(m, "zero_init_last"):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args: seen.append((mod, tuple(a.clone() if torch.is_tensor(a) else a for a in args)))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("name", MODELS)
def test_zero_init_last_makes_the_block_its_shortcut(name):
    model = tiny_model(name, **TWO_BLOCKS.get(name, {})).eval()
    n = input_size(name)
    x = torch.randn(2, model.in_channels, n, n, generator=torch.Generator().manual_seed(0))
    checked = 0
    for block, args in _block_inputs(model, x):
        block.zero_init_last()
        with torch.no_grad():
            out = block(*args)
        if out.shape != args[0].shape:
            continue  # a block that changes the shape has a projection shortcut
        # The addition's output, through the block's activation after the add where it has one.
        expected = getattr(block, "act", nn.Identity())(args[0].clone())
        torch.testing.assert_close(out, expected, msg=f"{name}: {type(block).__name__}")
        checked += 1
    assert checked > 0, f"{name}: no block kept its shape"


def test_resnet_zero_init_residual_zeroes_every_last_norm():
    model = tiny_model("resnet50", zero_init_residual=True)
    blocks = [m for m in model.modules() if hasattr(m, "zero_init_last")]
    assert blocks and all(torch.count_nonzero(b.conv3.norm.weight) == 0 for b in blocks)
    assert all(torch.count_nonzero(b.conv2.norm.weight) > 0 for b in blocks)  # only the last norm
    plain = tiny_model("resnet50")
    assert all(torch.count_nonzero(b.conv3.norm.weight) > 0 for b in plain.modules() if hasattr(b, "zero_init_last"))

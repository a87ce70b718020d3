"""FeatureExtractor (models/_features.py) over every classifier, and dilated backbones
(models/_dilate.py) against torchvision's."""
import pytest
import torch

import oracle
from conftest import input_size, tiny_model
from convnet import create_model
from convnet.models import count_parameters, get_entry, list_models
from convnet.models._base import FeatureInfo
from convnet.models._dilate import dilate
from convnet.models._features import FeatureExtractor
from convnet.weights import load_state

CLASSIFIERS = list_models(task="classify")


def _sizes(name: str, info: list[FeatureInfo]) -> tuple[int, int]:
    r_max = max(i.reduction for i in info)
    start = max(r_max, input_size(name))
    return start, start + r_max


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_gives_its_stages(name):
    """Channels and reductions of every stage, shallow to deep, for every registered classifier."""
    model = tiny_model(name).eval()
    info = list(model.feature_info)
    extractor = FeatureExtractor(model).eval()
    assert [f.channels for f in extractor.feature_info] == [f.channels for f in info]
    assert [f.module for f in extractor.feature_info] == [f"body.{f.module}" for f in info]
    modules = dict(extractor.named_modules())
    assert all(f.module in modules for f in extractor.feature_info)
    if get_entry(name).fixed_input_size:
        with torch.no_grad():
            maps = extractor(torch.randn(1, 2, *[input_size(name)] * 2))
        assert [m.shape[1] for m in maps] == [f.channels for f in info]
        return
    small, large = _sizes(name, info)
    with torch.no_grad():
        a = extractor(torch.randn(1, 2, small, small))
        b = extractor(torch.randn(1, 2, large, large))
    r_max = large - small
    for f, x, y in zip(info, a, b):
        assert x.shape[1] == y.shape[1] == f.channels, f.module
        assert all(q - p == r_max // f.reduction for p, q in zip(x.shape[2:], y.shape[2:])), f.module


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_outputs_equal_the_classifier_stage_outputs(spatial_dims):
    """The extracted maps are exactly what hooks on the classifier's stages see."""
    model = tiny_model("resnet18", spatial_dims).eval()
    captured = {}
    for f in model.feature_info:
        model.get_submodule(f.module).register_forward_hook(lambda m, a, o, k=f.module: captured.__setitem__(k, o))
    x = torch.randn(2, 2, *[32] * spatial_dims)
    with torch.no_grad():
        model.forward_features(x)
        maps = FeatureExtractor(model)(x)
    for f, m in zip(model.feature_info, maps):
        torch.testing.assert_close(m, captured[f.module], rtol=0, atol=0)


def test_runs_only_up_to_the_deepest_requested_stage():
    model = tiny_model("resnet18")
    total = count_parameters(model)
    shallow = FeatureExtractor(model, out_indices=(0, 1))
    assert shallow.traced
    names = {".".join(n.split(".")[:2]) for n, _ in shallow.body.named_parameters() if n.startswith("stages")}
    assert names == {"stages.0", "stages.1"}  # stages 2, 3 and the head are not held
    assert count_parameters(shallow) < total - count_parameters(model.stages[2])
    x = torch.randn(1, 2, 32, 32)
    maps = shallow(x)
    assert [m.shape[1] for m in maps] == [model.feature_info[0].channels, model.feature_info[1].channels]
    # Negative indices count from the deepest stage.
    assert [f.channels for f in FeatureExtractor(tiny_model("resnet18"), out_indices=(-1,)).feature_info] == \
        [model.feature_info[-1].channels]


def test_untraceable_family_falls_back_to_hooks():
    """ViT's forward_features cannot be traced (it unpacks a shape); hooks give its grid."""
    model = tiny_model("vit_s_16")
    extractor = FeatureExtractor(model)
    assert not extractor.traced
    out = extractor(torch.randn(2, 2, 32, 32))
    assert out[0].shape == (2, model.feature_info[0].channels, 4, 4)
    assert not any(k.startswith("body.head.fc") for k in extractor.state_dict())  # head dropped


def test_weights_come_from_a_classifier_of_the_same_architecture():
    """A pretrained classifier's weights go into an encoder by name (head and unused stages left out)."""
    extractor = FeatureExtractor(tiny_model("resnet18"), out_indices=(0, 1, 2))
    pretrained = tiny_model("resnet18")
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(1.0)
    extractor.load_from_classifier(pretrained)
    torch.testing.assert_close(extractor.body.stem.conv.conv.weight, pretrained.stem.conv.conv.weight)
    with pytest.raises(ValueError, match="does not fit this feature extractor: missing"):
        extractor.load_from_classifier(tiny_model("vgg11"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="out_indices .* 7 is out of range for the 4 stages"):
        FeatureExtractor(tiny_model("resnet18"), out_indices=(0, 7))
    with pytest.raises(ValueError, match=r"feature modules \['nowhere'\] are not modules"):
        FeatureExtractor(tiny_model("resnet18"), feature_info=[FeatureInfo(8, 4, "nowhere")])
    with pytest.raises(ValueError, match="no feature_info"):
        FeatureExtractor(torch.nn.Conv2d(1, 1, 1))


def test_export_of_the_traced_extractor():
    extractor = FeatureExtractor(tiny_model("resnet18", in_channels=3)).eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(extractor, (x,))
    y = torch.randn(2, 3, 64, 64)
    for a, b in zip(program.module()(y), extractor(y)):
        torch.testing.assert_close(a, b)


# -- dilation ---------------------------------------------------------------------------------------

def _tv_trunk(t, x):
    return t.layer4(t.layer3(t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x))))))))


def _dilated_resnet_matches_torchvision(tv_layers, block, name, **overrides):
    tv = oracle.torchvision_models()
    theirs = tv.resnet.ResNet(block(tv), tv_layers, replace_stride_with_dilation=[False, True, True])
    theirs = oracle.randomize_batchnorm(theirs).eval()
    ours = create_model(name, **overrides)
    load_state(ours, theirs.state_dict())
    params = count_parameters(ours)
    dilate(ours, 8).eval()
    assert count_parameters(ours) == params  # dilation changes no weight
    assert [f.reduction for f in ours.feature_info] == [4, 8, 8, 8]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = _tv_trunk(theirs, x), ours.forward_features(x)
    assert actual.shape == expected.shape == (1, ours.feature_info[-1].channels, 8, 8)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_dilated_resnet_equals_torchvision_replace_stride_with_dilation():
    """One block per stage: the first block of a dilated stage keeps the previous dilation."""
    _dilated_resnet_matches_torchvision([1, 1, 2, 2], lambda tv: tv.resnet.Bottleneck, "resnet50", layers=(1, 1, 2, 2))


@pytest.mark.slow
def test_dilated_resnet50_equals_torchvision_layer4():
    _dilated_resnet_matches_torchvision([3, 4, 6, 3], lambda tv: tv.resnet.Bottleneck, "resnet50")


def test_dilation_per_block_follows_torchvision_make_layer():
    """layer3 (dilate 2): first block conv2 dilation 1, stride 1, others 2; layer4: 2, then 4."""
    model = dilate(create_model("resnet50", layers=(2, 2, 2, 2)), 8)
    conv2 = [[b.conv2.conv for b in s.blocks] for s in model.stages]
    assert [[c.dilation[0] for c in s] for s in conv2] == [[1, 1], [1, 1], [1, 2], [2, 4]]
    assert [[c.stride[0] for c in s] for s in conv2] == [[1, 1], [2, 1], [1, 1], [1, 1]]
    assert [[c.padding[0] for c in s] for s in conv2] == [[1, 1], [1, 1], [1, 2], [2, 4]]
    assert model.stages[2].blocks[0].shortcut.conv.stride == (1, 1)
    model16 = dilate(create_model("resnet50", layers=(2, 2, 2, 2)), 16)
    assert [f.reduction for f in model16.feature_info] == [4, 8, 16, 16]
    assert [b.conv2.conv.dilation[0] for b in model16.stages[3].blocks] == [1, 2]


def test_dilated_mobilenet_v3_equals_torchvision_dilated():
    """mobilenet_v3_large(dilated=True): every block of the last stage, the strided one included,
    gets dilation 2 and stride 1 (output stride 16)."""
    tv = oracle.torchvision_models()
    theirs = oracle.randomize_batchnorm(tv.mobilenet_v3_large(dilated=True, width_mult=0.25)).eval()
    ours = create_model("mobilenet_v3_large", width_mult=0.25)
    load_state(ours, theirs.state_dict())
    dilate(ours, 16).eval()
    assert [f.reduction for f in ours.feature_info] == [2, 4, 8, 16, 16]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs.features(x), ours.forward_features(x)
    assert actual.shape == expected.shape == (1, expected.shape[1], 4, 4)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() < 1e-5


@pytest.mark.parametrize("name,output_stride", [
    ("resnet18", 8), ("resnet18", 16), ("resnet20_cifar", 2),  # 3x3/2 convs; option-A shortcuts
    ("convnext_tiny", 8), ("convnext_tiny", 16),  # 2x2/2 patchify downsampling
    ("densenet121", 8), ("vgg11", 8), ("vgg11", 16),  # 2x2/2 average and max pools
    ("efficientnet_b0", 8), ("mobilenet_v2", 16), ("xception", 8),  # depthwise, "same" convs
])
def test_dilated_maps_stop_shrinking_at_the_output_stride(name, output_stride):
    """The feature maps of the dilated stages keep the output stride's size."""
    model = tiny_model(name)
    reductions = [f.reduction for f in model.feature_info]
    params = count_parameters(model)
    dilate(model, output_stride).eval()
    assert count_parameters(model) == params
    assert [f.reduction for f in model.feature_info] == [min(r, output_stride) for r in reductions]
    size = 64
    with torch.no_grad():
        maps = FeatureExtractor(model)(torch.randn(1, 2, size, size))
        bigger = FeatureExtractor(model)(torch.randn(1, 2, size + 32, size + 32))
    for f, a, b in zip(model.feature_info, maps, bigger):
        assert b.shape[-1] - a.shape[-1] == 32 // f.reduction, f.module


def test_dilate_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"output_stride 12 is not a stage reduction .* \[4, 8, 16, 32\]"):
        dilate(tiny_model("resnet18"), 12)
    with pytest.raises(ValueError, match="strided_conv_dilation must be one of"):
        dilate(tiny_model("resnet18"), 8, "middle")

"""The registry, and the parameter counts every model publishes."""
import dataclasses

import pytest
import torch

from convnet import create_model, list_models, model_info
from convnet.models import get_entry, register
from convnet.models.lenet import LeNet, LeNetSpec, rbf_prototypes


def test_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        register("lenet5", LeNet, LeNetSpec(), family="lenet", paper="x", year=1998)


def test_spec_must_be_frozen_dataclass():
    @dataclasses.dataclass
    class Loose:
        a: int = 1

    with pytest.raises(TypeError, match="frozen"):
        register("loose_model", LeNet, Loose(), family="x", paper="x", year=2000)
    assert "loose_model" not in list_models()


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*did you mean.*resnet18"):
        create_model("resnet19")


def test_list_models_pattern():
    assert list_models("lenet*") == ["lenet1", "lenet5", "lenet5_modern"]
    assert "resnet18" in list_models("resnet*")
    assert list_models("nothing*") == []
    assert list_models() == sorted(list_models())


def test_paper_defaults_and_overrides():
    m = create_model("lenet5")
    assert (m.in_channels, m.num_classes) == (1, 10)
    r = create_model("resnet18", layers=(1, 1, 1, 1), drop_rate=0.5)
    assert (r.in_channels, r.num_classes) == (3, 1000)
    assert [len(s.blocks) for s in r.stages] == [1, 1, 1, 1]
    assert r.head.drop.p == 0.5
    assert r.model_config["overrides"] == {"layers": [1, 1, 1, 1], "drop_rate": 0.5}
    with pytest.raises(ValueError, match=r"unknown override.*'layerz'"):
        create_model("resnet18", layerz=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model("resnet18", spatial_dims=4)


def test_model_info_fields():
    info = model_info("lenet5")
    assert info["params"] == 60_000
    assert info["year"] == 1998 and "LeCun" in info["paper"]
    assert info["spatial_dims"] == (1, 2, 3) and info["input_size"] == 32


@pytest.mark.parametrize("name", [n for n in list_models() if get_entry(n).reference_params])
def test_parameter_count_equals_reference(name):
    """The figure each spec row cites (paper or reference implementation), recounted."""
    assert model_info(name)["params"] == get_entry(name).reference_params


def test_lenet5_layer_counts_pinned():
    """LeCun et al. 1998, §II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164."""
    m = create_model("lenet5")
    count = {name: sum(p.numel() for p in mod.parameters()) for name, mod in
             [("c1", m.features.c1), ("s2", m.features.s2), ("c3", m.features.c3), ("s4", m.features.s4),
              ("c5", m.features.c5), ("f6", m.head.f6), ("output", m.head.output)]}
    assert count == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 0}
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 60_000
    # The RBF prototypes are fixed: a buffer, saved with the weights, never trained.
    assert "head.output.prototypes" in m.state_dict()


def test_rbf_prototypes_are_the_digit_bitmaps():
    p = rbf_prototypes(10)
    assert p.shape == (10, 84) and set(p.unique().tolist()) == {-1.0, 1.0}
    # Distinct codes, each at least 6 bits from every other.
    d = torch.cdist(p, p).square() / 4 + torch.eye(10) * 100
    assert d.min() >= 6
    assert torch.equal(rbf_prototypes(26), rbf_prototypes(26))  # other class counts: fixed seed


def test_lenet5_prediction_is_nearest_prototype():
    m = create_model("lenet5").eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        f6 = m.head(m.forward_features(x), pre_logits=True)
        logits = m(x)
    nearest = torch.cdist(f6, m.head.output.prototypes).argmin(1)
    assert torch.equal(logits.argmax(1), nearest)

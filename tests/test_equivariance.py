"""Translation equivariance per layer and invariance of the logits: exact for circular stride-1
convolutions, broken by a stride-2 layer at odd shifts only, and `convnet equivariance`."""
import json

import pytest
from conftest import tiny_model
from torch import nn

from convnet import layers as L
from convnet.analysis.equivariance import equivariance
from convnet.cli import main


class CircularNet(nn.Module):
    """Convolutions with circular padding, ReLUs, global average pooling and a linear layer."""

    def __init__(self, spatial_dims: int = 2, strides: tuple[int, ...] = (1, 1, 1)):
        super().__init__()
        cls = L.conv_class(spatial_dims)
        chans = [2, 4, 6, 8]
        self.features = nn.Sequential(*[
            nn.Sequential(cls(chans[i], chans[i + 1], 3, stride=s, padding=1, padding_mode="circular"), nn.ReLU())
            for i, s in enumerate(strides)])
        self.fc = nn.Linear(chans[len(strides)], 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(2).mean(2))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_circular_stride1_stack_is_exactly_equivariant(spatial_dims):
    size = (2,) + (12 if spatial_dims < 3 else 8,) * spatial_dims
    rep = equivariance(CircularNet(spatial_dims).double(), size, shift=3, n_inputs=2)
    convs = [r for r in rep.layers if r.type.startswith("Conv")]
    assert len(convs) == 3 and all(r.jump == (1,) * spatial_dims and r.exact for r in convs)
    for r in rep.layers:
        assert r.circular < 1e-12 and r.circular_aligned < 1e-12, r
        assert r.cropped < 1e-12 and r.output_shift == (3.0,) * spatial_dims
    # Invariance of globally pooled logits under circular shifts.
    assert rep.logits.circular_change < 1e-12 and rep.logits.circular_top1 == 1.0
    assert rep.first_broken() is None


def test_stride2_breaks_equivariance_at_odd_shifts_only():
    model = CircularNet(2, strides=(1, 2, 1)).double()
    one = equivariance(model, (2, 16, 16), shift=1, n_inputs=2)
    rows = {r.name: r for r in one.layers}
    first, strided, after = rows["features.0.0"], rows["features.1.0"], rows["features.2.0"]
    assert first.circular < 1e-12 and first.jump == (1, 1)
    assert strided.jump == (2, 2) and not strided.exact and strided.output_shift == (0.5, 0.5)
    assert strided.circular > 0.05 and after.circular > 0.05  # aliasing, not a half-unit offset
    # The aligned shift (2 px = one output unit) is exact again.
    assert strided.aligned_shift == (2, 2) and strided.circular_aligned < 1e-12 and after.circular_aligned < 1e-12
    assert one.first_broken() == "features.1.0"
    two = equivariance(model, (2, 16, 16), shift=2, n_inputs=2)
    assert all(r.circular < 1e-12 for r in two.layers) and two.logits.circular_change < 1e-12
    assert one.logits.circular_change > 1e-6


def test_zero_padding_breaks_only_the_border():
    """With zero padding a circular shift errs at the borders; the interior of a cropped shift
    (away from the padding) stays exact for stride-1 layers."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                          nn.Flatten(2), nn.Flatten(1))
    rep = equivariance(model, (2, 20, 20), shift=2, n_inputs=2, layers=["0", "2"])
    assert [r.name for r in rep.layers] == ["0", "2"]
    for r in rep.layers:
        assert r.circular > 1e-3 and r.cropped < 1e-6


def test_registered_model_table_and_json():
    model = tiny_model("resnet18").train()
    rep = equivariance(model, (2, 32, 32), shift=1, n_inputs=1)
    assert model.training  # mode restored
    names = [r.name for r in rep.layers]
    assert "stem" in " ".join(names) and any(n.startswith("stages.3") for n in names)
    assert not any(r.type in ("Identity", "DropPath") for r in rep.layers)  # pass-throughs left out
    jumps = {r.name: r.jump for r in rep.layers}
    assert jumps["stages.3"] == (32, 32)  # resnet's reduction, as feature_info says
    assert jumps["stages.3"][0] == model.feature_info[-1].reduction
    text = rep.table()
    assert "stages.3 (Stage)" in text and "logits:" in text
    d = json.loads(rep.to_json())
    assert d["shift"] == [1, 1] and len(d["layers"]) == len(rep.layers)
    with pytest.raises(ValueError, match="no spatial output"):
        equivariance(model, (2, 32, 32), layers=["head.fc"])


def test_cli_equivariance(capsys):
    assert main(["equivariance", "lenet5", "--shift", "2", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "features.c1" in out and "logits:" in out
    assert main(["equivariance", "lenet5", "--json", "--layers", "features.c1,features.s2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in d["layers"]] == ["features.c1", "features.s2"]
    assert d["layers"][1]["jump"] == [2, 2]
    assert main(["equivariance", "lenet5", "--json", "--layers", "features.c5"]) == 0
    # LeNet-5's convolutions are unpadded: the jump of C5 is 4 (two 2x2 subsamplings), not 32 / 1.
    assert json.loads(capsys.readouterr().out)["layers"][0]["jump"] == [4, 4]
    assert main(["equivariance"]) == 2

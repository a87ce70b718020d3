"""LeNet-5: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11), 1998.

The paper's network, layer by layer (§II.B): a 32x32 input; C1, 6 maps of 5x5 convolutions;
S2, trainable subsampling (sum of 2x2, times a coefficient, plus a bias, then the squashing
function); C3, 16 maps of 5x5 convolutions where each map sees only the S2 maps in Table I;
S4, like S2; C5, 120 maps of 5x5 convolutions (1x1 outputs at 32x32 input); F6, 84 units;
and an output layer of Euclidean radial basis functions whose prototypes are fixed +-1
bitmaps of the digits (7x12). The squashing function is 1.7159 tanh(2a/3) (Appendix A).
That is 60,000 trainable parameters: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164.

``lenet5_modern`` keeps the layout and modernises the parts: ReLU, max pooling, a full C3 and
a linear classifier.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ConvNetClassifier, FeatureInfo
from ._registry import register

# Table I: the S2 maps (0-5) that each of C3's 16 maps takes as input. The first six take
# three contiguous maps, the next six four contiguous, three take four discontinuous, the last
# all six: 60 connections instead of 96.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Fig. 3: the RBF prototypes are stylised 7x12 images of the characters, +1 for ink and -1 for
# background ("#" and "." below), so that confusable digits get distant codes of equal norm.
_DIGIT_BITMAPS = (
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."),
    (".####..", "#....#.", ".....#.", ".....#.", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "######."),
    (".####..", "#....#.", ".....#.", ".....#.", "....#..", "..##...",
     "....#..", ".....#.", ".....#.", ".....#.", "#....#.", ".####.."),
    ("....#..", "...##..", "...##..", "..#.#..", "..#.#..", ".#..#..",
     ".#..#..", "#...#..", "#######", "....#..", "....#..", "....#.."),
    ("######.", "#......", "#......", "#......", "#####..", ".....#.",
     "......#", "......#", "......#", "......#", "#....#.", ".####.."),
    ("..###..", ".#.....", "#......", "#......", "#.###..", "##...#.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("#######", "......#", ".....#.", ".....#.", "....#..", "....#..",
     "...#...", "...#...", "..#....", "..#....", "..#....", "..#...."),
    ("..###..", ".#...#.", "#.....#", ".#...#.", "..###..", ".#...#.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."),
    ("..###..", ".#...#.", "#.....#", "#.....#", "#.....#", ".#...##",
     "..###.#", "......#", "......#", ".....#.", "....#..", "..##..."),
)


def rbf_prototypes(num_classes: int, features: int = 84) -> torch.Tensor:
    """The fixed +-1 prototypes: the digit bitmaps for 10 classes and 84 features, else codes
    drawn at random with a fixed seed (the paper's alternative, §II.B)."""
    if num_classes == 10 and features == 84:
        rows = ["".join(bitmap) for bitmap in _DIGIT_BITMAPS]
        return torch.tensor([[1.0 if c == "#" else -1.0 for c in row] for row in rows])
    g = torch.Generator().manual_seed(1998)
    return torch.randint(0, 2, (num_classes, features), generator=g).float() * 2 - 1


@dataclass(frozen=True)
class LeNetSpec:
    """One row of the LeNet spec table. ``partial_c3`` uses Table I; ``pool`` is ``subsample``
    (trainable, the paper) or ``max``; ``head`` is ``rbf`` (the paper) or ``linear``."""

    c1: int = 6
    c3: int = 16
    c5: int = 120
    f6: int = 84
    kernel_size: int = 5
    input_size: int = 32
    partial_c3: bool = True
    pool: str = "subsample"
    act_layer: str = "scaled_tanh"
    head: str = "rbf"
    init: str = "paper"  # "paper": uniform(+-2.4/fan_in), Appendix C; "torch": PyTorch's defaults
    # Logits are -penalty / T. The penalties of 84 +-1 units span hundreds, which saturates a
    # softmax and makes training spiky; T = 16 keeps the loss smooth. The ranking, hence the
    # prediction, is the paper's for any T.
    rbf_temperature: float = 16.0


class LeNetHead(nn.Module):
    """F6 and the output layer. With the RBF output, logits are the negated penalties, so the
    cross-entropy on them is the paper's MAP criterion (Eq. 9) without its constant j."""

    def __init__(self, spec: LeNetSpec, num_classes: int):
        super().__init__()
        self.spec = spec
        self.f6 = nn.Linear(spec.c5, spec.f6)
        self.act = L.get_act(spec.act_layer)
        self.output = self._make_output(num_classes)

    def _make_output(self, num_classes: int) -> nn.Module:
        if self.spec.head == "rbf":
            return L.EuclideanRBF(rbf_prototypes(num_classes, self.spec.f6))
        if self.spec.head == "linear":
            return nn.Linear(self.spec.f6, num_classes)
        raise ValueError(f"LeNet head must be 'rbf' or 'linear', got {self.spec.head!r}")

    def reset(self, num_classes: int) -> None:
        self.output = self._make_output(num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.f6(x.flatten(1)))  # (B, C5, 1, ...) -> (B, F6)
        if pre_logits:
            return x
        out = self.output(x)
        return -out / self.spec.rbf_temperature if self.spec.head == "rbf" else out


class LeNet(ConvNetClassifier):
    """LeNet-5 in 1, 2 or 3 dims. C1..C5 are ``features.c1`` ... ``features.c5``."""

    def __init__(self, spec: LeNetSpec = LeNetSpec(), spatial_dims: int = 2, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        self.spec = spec
        self.spatial_dims = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        d, k = spatial_dims, spec.kernel_size
        self.fixed_input_size = spec.input_size

        def pool(channels: int) -> nn.Module:
            if spec.pool == "subsample":
                return L.pool("subsample", d, 2, channels=channels)
            return L.pool(spec.pool, d, 2)

        if spec.partial_c3:
            if spec.c1 != 6 or spec.c3 != len(C3_TABLE):
                raise ValueError("LeNet-5's connection table (Table I) needs c1=6 and c3=16")
            c3: nn.Module = L.ConnectionTableConv(d, spec.c1, C3_TABLE, k)
        else:
            c3 = L.conv(d, spec.c1, spec.c3, k, padding=0)
        self.features = nn.Sequential()
        self.features.add_module("c1", L.conv(d, in_channels, spec.c1, k, padding=0))
        self.features.add_module("act1", L.get_act(spec.act_layer))
        self.features.add_module("s2", pool(spec.c1))
        self.features.add_module("act2", L.get_act(spec.act_layer))
        self.features.add_module("c3", c3)
        self.features.add_module("act3", L.get_act(spec.act_layer))
        self.features.add_module("s4", pool(spec.c3))
        self.features.add_module("act4", L.get_act(spec.act_layer))
        self.features.add_module("c5", L.conv(d, spec.c3, spec.c5, k, padding=0))
        self.features.add_module("act5", L.get_act(spec.act_layer))
        self.head = LeNetHead(spec, num_classes)
        self.feature_info = [
            FeatureInfo(spec.c1, 1, "features.c1"),
            FeatureInfo(spec.c1, 2, "features.s2"),
            FeatureInfo(spec.c3, 2, "features.c3"),
            FeatureInfo(spec.c3, 4, "features.s4"),
            FeatureInfo(spec.c5, 4, "features.c5"),
        ]
        self.cam_layer = "features.c3"
        if spec.init == "paper":
            self._init_paper()

    @torch.no_grad()
    def _init_paper(self) -> None:
        # Appendix C: weights uniform in [-2.4/F, 2.4/F], F the fan-in of the unit, which keeps
        # the weighted sums in the squashing function's useful range.
        for m in self.modules():
            if isinstance(m, L.ConnectionTableConv):
                bound = (2.4 / m.fan_in)[m.out_index].view(-1, *([1] * m.spatial_dims))
                m.weight.uniform_(-1, 1).mul_(bound)
            elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, L.TrainableSubsampling)):
                # A subsampling unit's fan-in is its window: one shared coefficient per input.
                fan_in = m.area if isinstance(m, L.TrainableSubsampling) else m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
            else:
                continue
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


_PAPER = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE 1998"
_COMMON = dict(family="lenet", paper=_PAPER, year=1998, in_channels=1, num_classes=10, input_size=32,
               mean=(0.0,), std=(1.0,), fixed_input_size=True, extra={"tiny": {}})

register("lenet5", LeNet, LeNetSpec(), reference_params=60_000,
         reference="LeCun et al. 1998, §II.B (C1 156, S2 12, C3 1516, S4 32, C5 48120, F6 10164)", **_COMMON)
register("lenet5_modern", LeNet,
         LeNetSpec(partial_c3=False, pool="max", act_layer="relu", head="linear", init="torch"), **_COMMON)

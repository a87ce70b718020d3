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

LeNet-1: Y. LeCun, B. Boser, J. S. Denker, D. Henderson, R. E. Howard, W. Hubbard, L. D. Jackel,
"Handwritten digit recognition with a back-propagation network", Advances in NIPS 2 (1989
conference, 1990), pp. 396-404; named LeNet-1 in the comparison of LeCun et al. 1995
("Learning algorithms for classification: a comparison on handwritten digit recognition"),
repeated in the 1998 paper. (The Neural Computation 1(4) paper of 1989, "Backpropagation applied
to handwritten zip code recognition", is its predecessor: a 16x16 input, strided convolutions,
no subsampling layers, 9,760 parameters.) The layers: a 28x28 input (the digit normalised to
16x16 and centred in it); H1, 4 maps of 5x5 convolutions (24x24); H2, trainable 2x2 averaging
(12x12); H3, 12 maps of 5x5 convolutions (8x8) where each map sees one or two H2 maps (Table 1,
p. 400: 20 of the 48 possible connections, two almost independent modules); H4, like H2 (4x4);
10 output units fully connected to H4's 192 units. Parameters: H1 4 * (25 + 1) = 104, H2 4 * 2 =
8, H3 20 * 25 + 12 = 512, H4 12 * 2 = 24, output 10 * (192 + 1) = 1,930: 2,578, the "2578
independent parameters" of p. 402 (the 1995 comparison's "about 2,600"). The paper's output units
are squashed and trained towards +-1 targets with mean squared error; ours are linear logits for
cross-entropy (the same parameters).
"""
from __future__ import annotations

from collections.abc import Sequence
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


@torch.no_grad()
def init_fan_in_uniform(model: nn.Module) -> None:
    """LeCun's initialisation (1998, Appendix C; already in the 1989 papers): weights uniform in
    [-2.4/F, 2.4/F], F the fan-in of the unit, which keeps the weighted sums in the squashing
    function's useful range; zero biases."""
    for m in model.modules():
        if isinstance(m, L.ConnectionTableConv):
            bound = (2.4 / m.fan_in)[m.out_index].view(-1, *([1] * m.spatial_dims))
            m.weight.uniform_(-1, 1).mul_(bound)
        elif isinstance(m, (nn.Linear, *L.CONV_TYPES, L.TrainableSubsampling)):
            # A subsampling unit's fan-in is its window: one shared coefficient per input.
            fan_in = m.area if isinstance(m, L.TrainableSubsampling) else m.weight[0].numel()
            nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
        else:
            continue
        nn.init.zeros_(m.bias)


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
        # C5's maps are 1x1 at the fixed input; the mean only matters for an inflated (3-D)
        # LeNet, whose free time axis it pools.
        x = x.flatten(2).mean(2)  # (B, C5, 1, ...) -> (B, C5)
        x = self.act(self.f6(x))  # (B, F6)
        if pre_logits:
            return x
        out = self.output(x)
        return -out / self.spec.rbf_temperature if self.spec.head == "rbf" else out


def conv_pool_stack(spatial_dims: int, in_channels: int, first: int, second: int, kernel_size: int,
                    pool: str, act_layer: str, table: Sequence[Sequence[int]] | None,
                    names: tuple[str, str, str, str]) -> nn.Sequential:
    """The trunk LeNet-1 and LeNet-5 share: convolution, pool, convolution (through a
    connection table when given), pool, each followed by the activation (``act1``..``act4``).
    ``names`` are the paper's names of the four layers (C1, S2, C3, S4 or H1..H4)."""
    d = spatial_dims

    def pooling(channels: int) -> nn.Module:
        if pool == "subsample":  # LeNet's trainable subsampling: a coefficient and a bias per map
            return L.pool("subsample", d, 2, channels=channels)
        return L.pool(pool, d, 2)

    conv2 = (L.ConnectionTableConv(d, first, table, kernel_size) if table is not None
             else L.conv(d, first, second, kernel_size, padding=0))
    layers = (L.conv(d, in_channels, first, kernel_size, padding=0), pooling(first), conv2, pooling(second))
    stack = nn.Sequential()
    for i, (name, layer) in enumerate(zip(names, layers), start=1):
        stack.add_module(name, layer)
        stack.add_module(f"act{i}", L.get_act(act_layer))
    return stack


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

        if spec.partial_c3 and (spec.c1 != 6 or spec.c3 != len(C3_TABLE)):
            raise ValueError("LeNet-5's connection table (Table I) needs c1=6 and c3=16")
        self.features = conv_pool_stack(d, in_channels, spec.c1, spec.c3, k, spec.pool, spec.act_layer,
                                        C3_TABLE if spec.partial_c3 else None, ("c1", "s2", "c3", "s4"))
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

    def _init_paper(self) -> None:
        init_fan_in_uniform(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# LeNet-1's Table 1 (NIPS 2, p. 400): the H2 maps (0-3) that each of H3's 12 maps sees. Maps
# 0-5 read H2 maps 0 and 1, maps 6-11 read 2 and 3 (two modules); in each module the first and
# fourth see a single map.
H3_TABLE: tuple[tuple[int, ...], ...] = (
    (0,), (0, 1), (0, 1), (1,), (0, 1), (0, 1),
    (2,), (2, 3), (2, 3), (3,), (2, 3), (2, 3),
)


@dataclass(frozen=True)
class LeNet1Spec:
    """LeNet-1's layout. ``partial_h3`` uses Table 1 (else H3 sees every H2 map); ``pool`` is
    ``subsample`` (trainable averaging, the paper) or ``avg``/``max``."""

    h1: int = 4
    h3: int = 12
    kernel_size: int = 5
    input_size: int = 28
    partial_h3: bool = True
    pool: str = "subsample"
    act_layer: str = "scaled_tanh"
    init: str = "paper"  # "paper": uniform(+-2.4/fan_in); "torch": PyTorch's defaults


class LeNet1Head(nn.Module):
    """The output layer: every unit of H4 to each of the classes (``fc``)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.in_features = in_features
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)  # (B, H3, 4, ...) -> (B, H3 * 4^d)
        return x if pre_logits else self.fc(x)


class LeNet1(ConvNetClassifier):
    """LeNet-1 in 1, 2 or 3 dims. H1..H4 are ``features.h1`` ... ``features.h4``."""

    def __init__(self, spec: LeNet1Spec = LeNet1Spec(), spatial_dims: int = 2, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        k = spec.kernel_size
        # The output layer is fully connected to H4, so the net fits one input size only.
        self.fixed_input_size = spec.input_size
        h4_size = ((spec.input_size - k + 1) // 2 - k + 1) // 2
        if h4_size < 1:
            raise ValueError(f"LeNet-1 needs an input of at least {4 * k - 2}, got {spec.input_size}")

        if spec.partial_h3 and (spec.h1 != 4 or spec.h3 != len(H3_TABLE)):
            raise ValueError("LeNet-1's connection table (Table 1) needs h1=4 and h3=12")
        self.features = conv_pool_stack(d, in_channels, spec.h1, spec.h3, k, spec.pool, spec.act_layer,
                                        H3_TABLE if spec.partial_h3 else None, ("h1", "h2", "h3", "h4"))
        self.head = LeNet1Head(spec.h3 * h4_size ** d, num_classes)
        self.feature_info = [
            FeatureInfo(spec.h1, 1, "features.h1"),
            FeatureInfo(spec.h1, 2, "features.h2"),
            FeatureInfo(spec.h3, 2, "features.h3"),
            FeatureInfo(spec.h3, 4, "features.h4"),
        ]
        self.cam_layer = "features.h3"
        if spec.init == "paper":
            init_fan_in_uniform(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


_PAPER = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE 1998"
_COMMON = dict(family="lenet", paper=_PAPER, year=1998, in_channels=1, num_classes=10, input_size=32,
               mean=(0.0,), std=(1.0,), fixed_input_size=True, extra={"tiny": {}})

register("lenet5", LeNet, LeNetSpec(), reference_params=60_000,
         reference="LeCun et al. 1998, §II.B (C1 156, S2 12, C3 1516, S4 32, C5 48120, F6 10164)", **_COMMON)
register("lenet5_modern", LeNet,
         LeNetSpec(partial_c3=False, pool="max", act_layer="relu", head="linear", init="torch"), **_COMMON)

_PAPER_1989 = ("LeCun, Boser, Denker, Henderson, Howard, Hubbard, Jackel. Handwritten digit recognition "
               "with a back-propagation network. Advances in NIPS 2, 1989")
register("lenet1", LeNet1, LeNet1Spec(), family="lenet", paper=_PAPER_1989, year=1989, in_channels=1,
         num_classes=10, input_size=28, mean=(0.0,), std=(1.0,), fixed_input_size=True,
         reference_params=2_578,
         reference="LeCun et al., NIPS 2, p. 402 ('2578 independent parameters'; LeCun et al. 1995: "
                   "'about 2,600'): H1 104, H2 8, H3 512, H4 24, output 1930",
         extra={"tiny": {}})

"""AlexNet: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012.

Five convolutional layers and three fully connected ones (§3.5, Fig. 2): conv1 96 kernels of
11x11 at stride 4; conv2 256 of 5x5; conv3 384 of 3x3; conv4 384 of 3x3; conv5 256 of 3x3;
fc6 and fc7 4096 units each; fc8 1000-way. ReLU follows every layer (§3.1); local response
normalisation follows the ReLUs of conv1 and conv2 (§3.3, §3.5); overlapping 3x3 max pools at
stride 2 (§3.4) follow both normalisations and conv5; dropout 0.5 zeroes the outputs of the
hidden units of fc6 and fc7 in training (§4.2).

The net was split over two GPUs (§3.2): conv2, conv4 and conv5 see only the maps of their own
GPU (``groups=2`` here), while conv3 and the fully connected layers see both halves. The paper
says the input is 224x224x3, but (224 - 11) / 4 + 1 is not an integer and Fig. 2's 55x55 conv1
maps need a 227x227 input at no padding: ``alexnet_original`` is registered at 227.

Its parameters, K * (F * F * C / groups + 1) per layer (K kernels of F x F over C maps):
conv1 96 * (11*11*3 + 1) = 34,944; conv2 256 * (5*5*96/2 + 1) = 307,456;
conv3 384 * (3*3*256 + 1) = 885,120; conv4 384 * (3*3*384/2 + 1) = 663,936;
conv5 256 * (3*3*384/2 + 1) = 442,624; fc6 4096 * (256*6*6 + 1) = 37,752,832;
fc7 4096 * (4096 + 1) = 16,781,312; fc8 1000 * (4096 + 1) = 4,097,000: 60,965,224 in all, the
paper's "60 million" (abstract), and Caffe's bvlc_alexnet count.

``alexnet`` is torchvision's single-tower layout (torchvision.models.alexnet, after Krizhevsky's
"One weird trick for parallelizing convolutional neural networks", arXiv:1404.5997): 64, 192,
384, 256, 256 kernels, no grouping, no normalisation, padding 2 in conv1, dropout before fc6 and
fc7; 61,100,840 parameters. Both end in an adaptive 6x6 average pool (the identity at the
paper's input size) so that any input of at least 63 (67 for the original) and 1, 2 or 3
spatial dims reaches the classifier with the same shape.

The paper preprocesses by subtracting the mean image only (§2); the registered mean and std are
torchvision's, as its checkpoints expect.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ConvNetClassifier, FeatureInfo
from ._registry import register


@dataclass(frozen=True)
class AlexNetSpec:
    """One AlexNet layout: five convolutions (conv1..conv5) and a three-layer classifier.

    Attributes:
        widths: kernels of conv1..conv5.
        kernel_sizes: kernel size of conv1..conv5 (per axis).
        groups: channel groups of conv1..conv5 (2 where the paper splits across GPUs).
        stem_stride, stem_padding: conv1's stride and padding (conv2..5 keep their size).
        lrn: local response normalisation after the ReLUs of conv1 and conv2 (§3.3).
        dropout_after_fc: dropout on the outputs of fc6 and fc7 (the paper, §4.2) instead of on
            their inputs (torchvision).
        fc_width: units of fc6 and fc7.
        pool_size: the adaptive average pool before fc6, per axis.
        init: ``"paper"`` (§5: N(0, 0.01) weights, biases 1 in conv2, conv4, conv5, fc6, fc7 and 0
            elsewhere) or ``"torch"`` (PyTorch's defaults, as torchvision).
    """

    widths: tuple[int, ...] = (64, 192, 384, 256, 256)
    kernel_sizes: tuple[int, ...] = (11, 5, 3, 3, 3)
    groups: tuple[int, ...] = (1, 1, 1, 1, 1)
    stem_stride: int = 4
    stem_padding: int = 2
    lrn: bool = False
    dropout_after_fc: bool = False
    fc_width: int = 4096
    pool_size: int = 6
    init: str = "torch"


# conv1..conv5 by stage: a max pool closes each stage (§3.5), so the stages are the stretches
# between pools, with reductions 8, 16, 32.
_STAGES = ((0,), (1,), (2, 3, 4))


class AlexNetHead(nn.Module):
    """Adaptive pool, flatten, fc1 (fc6), fc2 (fc7), ``fc`` (fc8), with ReLU and dropout."""

    def __init__(self, spatial_dims: int, channels: int, spec: AlexNetSpec, num_classes: int,
                 drop_rate: float):
        super().__init__()
        self.pool = L.adaptive_avg_pool(spatial_dims, spec.pool_size)
        self.in_features = spec.fc_width
        self.dropout_after_fc = spec.dropout_after_fc
        self.fc1 = nn.Linear(channels * spec.pool_size ** spatial_dims, spec.fc_width)
        self.fc2 = nn.Linear(spec.fc_width, spec.fc_width)
        self.act = nn.ReLU(inplace=True)
        self.drop = L.dropout(None, drop_rate)  # stateless: one module serves both places
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, *S) -> (B, C * pool_size^d)
        if self.dropout_after_fc:  # the paper zeroes the outputs of fc6 and fc7 (§4.2)
            x = self.act(self.fc1(x))  # fc6: (B, fc_width)
            x = self.drop(x)
            x = self.act(self.fc2(x))  # fc7
            x = self.drop(x)
        else:  # torchvision drops their inputs
            x = self.drop(x)
            x = self.act(self.fc1(x))  # fc6: (B, fc_width)
            x = self.drop(x)
            x = self.act(self.fc2(x))  # fc7
        return x if pre_logits else self.fc(x)


class AlexNet(ConvNetClassifier):
    """AlexNet in 1, 2 or 3 dims: ``stages[i]`` hold ``conv1``..``conv5`` (ConvNormAct with
    ReLU), the LRNs ``lrn1``/``lrn2`` and a ``pool`` each; ``head`` is the classifier."""

    def __init__(self, spec: AlexNetSpec = AlexNetSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.5):
        super().__init__()
        if not len(spec.widths) == len(spec.kernel_sizes) == len(spec.groups) == 5:
            raise ValueError("AlexNet has five convolutions: widths, kernel_sizes and groups need 5 entries")
        if spec.init not in ("paper", "torch"):
            raise ValueError(f"AlexNet init must be 'paper' or 'torch', got {spec.init!r}")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        channels, reduction = in_channels, spec.stem_stride
        # Three 3x2 max pools follow conv1, conv2 and conv5 (the others keep their size): the last
        # needs 3 pixels, so pool 2 needs 7 in, pool 1 15, and conv1 (k, stride s, padding p)
        # needs 14 s + k - 2 p: 63 for torchvision's layout, 67 for the paper's unpadded one.
        self.min_input_size = 14 * spec.stem_stride + spec.kernel_sizes[0] - 2 * spec.stem_padding
        self.stages = nn.ModuleList()
        self.feature_info = []
        for s, convs in enumerate(_STAGES):
            stage = nn.Sequential()
            for i in convs:
                first = i == 0
                stage.add_module(f"conv{i + 1}", L.ConvNormAct(
                    d, channels, spec.widths[i], spec.kernel_sizes[i],
                    stride=spec.stem_stride if first else 1,
                    padding=spec.stem_padding if first else None,
                    groups=spec.groups[i], norm_layer=None, act_layer="relu", bias=True))
                channels = spec.widths[i]
                if spec.lrn and i < 2:
                    # After the ReLU and before the pool (§3.3, §3.5); the layer takes alpha in
                    # the paper's sense (torch divides it by n).
                    stage.add_module(f"lrn{i + 1}", L.norm("local_response", d, channels))
            stage.add_module("pool", L.max_pool(d, 3, 2))  # overlapping: z=3 > s=2 (§3.4)
            reduction *= 2
            self.stages.append(stage)
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{s}"))
        self.head = AlexNetHead(d, channels, spec, num_classes, drop_rate)
        self.cam_layer = "stages.2.conv5"
        if spec.init == "paper":
            self._init_paper()

    @torch.no_grad()
    def _init_paper(self) -> None:
        # §5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fc layers, which
        # "accelerates the early stages of learning by providing the ReLUs with positive inputs".
        ones = {"stages.1.conv2.conv", "stages.2.conv4.conv", "stages.2.conv5.conv", "head.fc1", "head.fc2"}
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, *L.CONV_TYPES)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.constant_(m.bias, 1.0 if name in ones else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


_PAPER = ("Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
          "Networks. NIPS 2012")
_TINY = {"widths": (8, 16, 16, 16, 16), "fc_width": 32, "pool_size": 2}

ALEXNET_SPECS: dict[str, dict] = {
    # torchvision's single-tower layout: 64/192/384/256/256 kernels, no groups, no LRN; 63 is the
    # least input its three pools allow.
    "alexnet": dict(spec=AlexNetSpec(), reference_params=61_100_840, reference="torchvision.models.alexnet",
                    paper=_PAPER + " (torchvision's single-tower layout, after Krizhevsky 2014, arXiv:1404.5997)",
                    extra={"tiny": _TINY, "test_input": 64}),
    # §3.5 and Fig. 2: 96/256/384/384/256 kernels, the two-GPU split as groups, LRN, no padding
    # in conv1 at the 227 input (67 the least without it), the paper's dropout placement and init.
    "alexnet_original": dict(spec=AlexNetSpec(widths=(96, 256, 384, 384, 256), groups=(1, 2, 1, 2, 2),
                                              stem_padding=0, lrn=True, dropout_after_fc=True, init="paper"),
                             input_size=227, reference_params=60_965_224, paper=_PAPER,
                             reference="Krizhevsky et al. 2012 §3.5/Fig. 2 layer table, sum of K*(F*F*C/groups+1) "
                                       "(paper: '60 million'; Caffe bvlc_alexnet: 60,965,224)",
                             extra={"tiny": _TINY, "test_input": 67}),
}

for _name, _row in ALEXNET_SPECS.items():
    register(_name, AlexNet, family="alexnet", year=2012, **_row)

"""Video classifiers over clips (B, C, T, H, W): C3D, the 18-layer video ResNets, and I3D.

- ``c3d``: D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri, "Learning Spatiotemporal
  Features with 3D Convolutional Networks", ICCV 2015 (arXiv:1412.0767), Fig. 3: eight 3x3x3
  convolutions (64, 128, 256 x 2, 512 x 2, 512 x 2; stride 1, padding 1, ReLU), five max pools
  (pool1 1x2x2 "with the intention of not to merge the temporal signal too early", the others
  2x2x2), fc6 and fc7 of 4096 units with dropout 0.5, softmax over 487 Sports-1M classes, on
  3 x 16 x 112 x 112 clips. The pools round up (Caffe's pooling, ceil mode), which makes pool5
  map 2 x 7 x 7 to 1 x 4 x 4, so fc6 reads 512 x 1 x 4 x 4 = 8,192 inputs (the common PyTorch
  port pads pool5 by (0, 1, 1) instead: same size, windows shifted by one pixel). fc6 fixes the
  input to exactly 16 x 112 x 112.
- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: D. Tran, H. Wang, L. Torresani, J. Ray, Y. LeCun,
  M. Paluri, "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
  (arXiv:1711.11248), in torchvision's layout (``torchvision/models/video/resnet.py``, whose
  state dicts load through ``weights/keymaps/video.py``): a stem of 3x7x7 stride (1, 2, 2)
  (R(2+1)D: 1x7x7 to 45 channels then 3x1x1 to 64), four stages of two basic blocks (64, 128,
  256, 512; stride 2 in every axis from stage 2) and global average pooling. R3D's blocks use
  3x3x3 convolutions; MC3 keeps 3x3x3 in stage 1 and uses 1x3x3 (no temporal extent, stride
  (1, 2, 2)) after it; R(2+1)D factorises each 3x3x3 into 1x3x3 to M_i channels, BN, ReLU and
  3x1x1, with M_i = floor(27 N_{i-1} N_i / (9 N_{i-1} + 3 N_i)) so that it has the parameters of
  the 3-D convolution (§3.5, Eq. 2; torchvision computes it once per block from the block's
  input and output widths and uses it for both convolutions).
- ``i3d``: J. Carreira, A. Zisserman, "Quo Vadis, Action Recognition? A New Model and the
  Kinetics Dataset", CVPR 2017, §2.4 and Fig. 3: Inception-v1 with batch norm (convnet's
  ``googlenet``: torchvision's Inception-v1 with BN, whose "5x5" branch is a 3x3 as in
  DeepMind's kinetics-i3d Mixed modules) inflated from 2-D with :func:`convnet.models.inflate`
  (kernels repeated along time and divided by their extent), then given the paper's temporal
  layout: conv1 7x7x7 stride 2 in every axis, the first two max pools 1x3x3 stride (1, 2, 2),
  the pool before Mixed_4b 3x3x3 stride 2, the one before Mixed_5b 2x2x2 stride 2, the
  modules' pool branch 3x3x3 stride 1; other k x k kernels become 3 x k x k.
  Differences from the paper, all kept so that a clip of one repeated image gives exactly the
  2-D network's output (the "boring video" property §2.4 is built on): time is padded by
  repeating the edge frames (the paper pads with zeros, "SAME"); the classifier is global
  average pooling, dropout 0.5 and a linear layer (the paper: 2x7x7 average pooling, a 1x1x1
  convolution to logits, and an average of the logits over time); batch norm keeps
  googlenet's epsilon 1e-3 (as kinetics-i3d). :func:`i3d_from_2d` inflates a trained 2-D
  GoogLeNet (e.g. torchvision's ImageNet weights loaded with ``load_pretrained``).

Every model here is 3-D only (``spatial_dims=3``, the registry's default for them) and takes
float clips (B, 3, T, H, W); ``feature_info`` reductions count height and width (time is
reduced by the strides in time: 8 for the video ResNets and I3D, 16 for C3D).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo, Stage
from ._inflate import inflate
from ._registry import register
from .inception import GoogLeNet, GoogLeNetSpec


def _check_video_dims(name: str, spatial_dims: int) -> None:
    if spatial_dims != 3:
        raise ValueError(f"{name} is a video model over (T, H, W): spatial_dims must be 3, got {spatial_dims}")


class ClipInput:
    """Input checks for clips: time is strided less than height and width (or not at all), so
    the smallest input the network takes is its total stride in height and width only; any
    number of frames works."""

    def min_spatial_size(self) -> int | None:
        return None  # the all-axes minimum of ConvNetClassifier does not apply to (T, H, W)

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)  # rank, channels (and whatever else the base checks)
        stride = max((i.reduction for i in self.feature_info), default=1)
        if any(s < stride for s in x.shape[-2:]):
            name = self.default_cfg.get("name", type(self).__name__)
            raise ValueError(f"{name} expects height and width of at least {stride} (its layers downsample "
                             f"them by {stride}), got {tuple(x.shape[2:])} (T, H, W)")


# --------------------------------------------------------------------------------------------
# C3D


@dataclass(frozen=True)
class C3DSpec:
    """Tran et al. 2015, Fig. 3: convolutions per stage and their widths, the fc widths."""

    stages: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))  # conv1a .. conv5b
    pool1: tuple[int, int, int] = (1, 2, 2)  # the other pools are 2x2x2
    fc_width: int = 4096  # fc6, fc7
    clip: tuple[int, int, int] = (16, 112, 112)  # T, H, W: fc6 is built for this input


class C3DHead(nn.Module):
    """fc6, ReLU, dropout, fc7, ReLU, dropout, ``fc`` (fc8): on the flattened pool5 map."""

    def __init__(self, in_features: int, width: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.fc6 = nn.Linear(in_features, width)
        self.fc7 = nn.Linear(width, width)
        self.act = nn.ReLU(inplace=True)
        self.drop = L.dropout(None, drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc7.out_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)  # (B, 512, 1, 4, 4) -> (B, 8192)
        x = self.drop(self.act(self.fc6(x)))
        x = self.drop(self.act(self.fc7(x)))
        return x if pre_logits else self.fc(x)


class C3D(ClipInput, ConvNetClassifier):
    """C3D: ``stages[i]`` (convolutions then a max pool), ``head`` (fc6, fc7, fc8)."""

    def __init__(self, spec: C3DSpec = C3DSpec(), spatial_dims: int = 3, in_channels: int = 3,
                 num_classes: int = 487, drop_rate: float = 0.5):
        super().__init__()
        _check_video_dims("c3d", spatial_dims)
        self.spec = spec
        self.spatial_dims = d = 3
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stem = nn.Identity()
        self.stages = nn.ModuleList()
        self.feature_info = []
        channels, reduction = in_channels, 1
        size = list(spec.clip)
        for i, widths in enumerate(spec.stages):
            blocks: list[nn.Module] = []
            for w in widths:
                blocks.append(L.ConvNormAct(d, channels, w, 3, norm_layer=None))  # 3x3x3, stride 1, pad 1, ReLU
                channels = w
            pool = spec.pool1 if i == 0 else (2, 2, 2)
            # Caffe's pooling rounds up: pool5 takes 2x7x7 to 1x4x4.
            blocks.append(L.max_pool(d, pool, pool, ceil_mode=True))
            size = [-(-s // p) for s, p in zip(size, pool)]
            reduction *= pool[-1]
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.fixed_shape = tuple(spec.clip)
        self.head = C3DHead(channels * size[0] * size[1] * size[2], spec.fc_width, num_classes, drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):  # the Caffe model's Gaussian filler
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim == 5 and tuple(x.shape[2:]) != self.fixed_shape:
            raise ValueError(f"c3d expects clips of {self.fixed_shape} (T, H, W): fc6 reads the pool5 map of "
                             f"exactly that input; got {tuple(x.shape[2:])} (crop or sample 16-frame clips)")
        super().check_input(x)


# --------------------------------------------------------------------------------------------
# R3D, MC3, R(2+1)D (torchvision's layouts)


@dataclass(frozen=True)
class VideoResNetSpec:
    """One row of the video ResNet table: the convolution type of each stage's blocks."""

    layers: tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)
    convs: tuple[str, ...] = ("3d", "3d", "3d", "3d")  # per stage: "3d", "2d" (1x3x3), "2plus1d"
    stem: str = "basic"  # "basic": 3x7x7 (1, 2, 2); "2plus1d": 1x7x7 to stem_mid, then 3x1x1
    stem_width: int = 64
    stem_mid: int = 45  # R(2+1)D stem's intermediate width (torchvision: 45)


def midplanes(in_channels: int, out_channels: int) -> int:
    """Tran et al. 2018 Eq. 2: the (2+1)D intermediate width with the parameters of a 3x3x3 conv."""
    return (in_channels * out_channels * 27) // (in_channels * 9 + 3 * out_channels)


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factorised (§3.5): ``spatial`` 1x3x3 (stride (1, s, s)) to ``mid``
    channels, ``norm``, ``act``, ``temporal`` 3x1x1 (stride (s, 1, 1))."""

    def __init__(self, in_channels: int, out_channels: int, mid: int, stride: int):
        super().__init__()
        self.spatial = L.conv(3, in_channels, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.norm = L.norm("batch", 3, mid)
        self.act = nn.ReLU(inplace=True)
        self.temporal = L.conv(3, mid, out_channels, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False)


def _video_conv(kind: str, in_channels: int, out_channels: int, mid: int, stride: int) -> nn.Module:
    if kind == "3d":
        return L.conv(3, in_channels, out_channels, 3, stride, 1, bias=False)
    if kind == "2d":  # no temporal extent (MC3's upper stages): time is never strided
        return L.conv(3, in_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
    if kind == "2plus1d":
        return Conv2Plus1D(in_channels, out_channels, mid, stride)
    raise ValueError(f"convolution type must be '3d', '2d' or '2plus1d', got {kind!r}")


class ConvUnit(nn.Sequential):
    """``conv`` (any of the three types), ``norm``, optional ``act``: torchvision's conv1/conv2."""

    def __init__(self, conv: nn.Module, channels: int, act: bool):
        super().__init__()
        self.conv = conv
        self.norm = L.norm("batch", 3, channels)
        if act:
            self.act = nn.ReLU(inplace=True)


class VideoBasicBlock(nn.Module):
    """Two convolutions of the stage's type with BN (ReLU after the first), a shortcut (1x1x1
    conv + BN with the stride of the type where the shape changes), the addition, ReLU."""

    def __init__(self, kind: str, in_channels: int, width: int, stride: int):
        super().__init__()
        mid = midplanes(in_channels, width)  # one value for both convolutions, as torchvision
        self.conv1 = ConvUnit(_video_conv(kind, in_channels, width, mid, stride), width, act=True)
        self.conv2 = ConvUnit(_video_conv(kind, width, width, mid, 1), width, act=False)
        if stride != 1 or in_channels != width:
            ds = (1, stride, stride) if kind == "2d" else (stride,) * 3
            self.shortcut = L.ConvNormAct(3, in_channels, width, 1, ds, norm_layer="batch", act_layer=None)
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class VideoResNet(ClipInput, ConvNetClassifier):
    """R3D / MC3 / R(2+1)D: ``stem``, ``stages[i].blocks[j]``, ``head`` (global average pool, fc)."""

    def __init__(self, spec: VideoResNetSpec = VideoResNetSpec(), spatial_dims: int = 3, in_channels: int = 3,
                 num_classes: int = 400, drop_rate: float = 0.0):
        super().__init__()
        _check_video_dims("video resnet", spatial_dims)
        if not len(spec.layers) == len(spec.widths) == len(spec.convs):
            raise ValueError(f"layers, widths and convs need one entry per stage, got {spec}")
        self.spec = spec
        self.spatial_dims = 3
        self.in_channels = in_channels
        self.num_classes = num_classes
        w = spec.stem_width
        if spec.stem == "basic":
            self.stem = L.ConvNormAct(3, in_channels, w, (3, 7, 7), (1, 2, 2), (1, 3, 3), norm_layer="batch")
        elif spec.stem == "2plus1d":
            self.stem = nn.Sequential()
            self.stem.add_module("spatial", L.ConvNormAct(3, in_channels, spec.stem_mid, (1, 7, 7), (1, 2, 2),
                                                          (0, 3, 3), norm_layer="batch"))
            self.stem.add_module("temporal", L.ConvNormAct(3, spec.stem_mid, w, (3, 1, 1), 1, (1, 0, 0),
                                                           norm_layer="batch"))
        else:
            raise ValueError(f"stem must be 'basic' or '2plus1d', got {spec.stem!r}")
        self.stages = nn.ModuleList()
        self.feature_info = []
        channels, reduction = w, 2
        for i, (depth, width, kind) in enumerate(zip(spec.layers, spec.widths, spec.convs)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(VideoBasicBlock(kind, channels, width, stride if j == 0 else 1))
                channels = width
            reduction *= stride
            self.stages.append(Stage(blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        self.head = ClassifierHead(channels, num_classes, drop_rate=drop_rate)
        self.cam_layer = f"stages.{len(self.stages) - 1}"
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# I3D


@dataclass(frozen=True)
class I3DSpec:
    """I3D's temporal layout on top of the 2-D GoogLeNet (Carreira & Zisserman Fig. 3)."""

    width_mult: float = 1.0  # of the 2-D Inception-v1 (GoogLeNetSpec) that is inflated
    time_kernel: int = 3  # every k x k kernel becomes time_kernel x k x k
    stem_time_kernel: int = 7  # conv1: 7x7x7
    stem_time_stride: int = 2  # conv1: stride 2 in time too
    stage_time_pools: tuple[int, ...] = (1, 3, 2)  # time extent = stride of the pools before Mixed_3, 4, 5
    module_time_pool: int = 3  # the modules' pool branch: 3x3x3 stride 1


def _set_time_pool(pool: nn.Module, extent: int) -> nn.Module:
    """A per-frame MaxPool3d (1 x k x k) given ``extent`` in time and stride 2 in time (Fig. 3)."""
    if extent == 1:
        return pool
    _, kh, kw = pool.kernel_size
    _, sh, sw = pool.stride
    return L.max_pool(3, (extent, kh, kw), (2, sh, sw), (0, *pool.padding[1:]), ceil_mode=pool.ceil_mode)


class I3DNet(ClipInput, GoogLeNet):
    """An inflated GoogLeNet: the same modules, with input checks for clips (see :class:`ClipInput`)."""


def i3d_from_2d(model: GoogLeNet, spec: I3DSpec = I3DSpec()) -> GoogLeNet:
    """Inflate a 2-D GoogLeNet (trained or not) into I3D, weights included; ``model`` is unchanged.

    conv1 is inflated to ``stem_time_kernel`` with stride ``stem_time_stride`` in time; every
    other k x k kernel to ``time_kernel``; the pools get the paper's temporal extents.
    """
    if not isinstance(model, GoogLeNet) or model.spatial_dims != 2:
        raise ValueError("i3d_from_2d expects a 2-D GoogLeNet (create_model('googlenet'))")
    video = inflate(model, time_kernel=spec.time_kernel)
    conv1 = L.inflate_module(model.stem.conv1.conv, spec.stem_time_kernel)
    conv1.stride = (spec.stem_time_stride, *conv1.stride[1:])  # 7x7x7 stride 2 in every axis
    video.stem.conv1.conv = conv1
    for stage, extent in zip(video.stages, spec.stage_time_pools):
        stage.pool = _set_time_pool(stage.pool, extent)
    for m in video.modules():
        if isinstance(m, L.SamePool):  # the modules' pool branch; SamePool pads time with -inf too
            m.pool = L.max_pool(3, (spec.module_time_pool, 3, 3), 1)
    # Same modules and attributes; the subclass only adds the clip input checks.
    video.__class__ = I3DNet
    return video


def I3D(spec: I3DSpec = I3DSpec(), spatial_dims: int = 3, in_channels: int = 3, num_classes: int = 400,
        drop_rate: float = 0.5) -> GoogLeNet:
    """A freshly initialised I3D: a 2-D GoogLeNet (``GoogLeNetSpec(width_mult=spec.width_mult)``)
    inflated by :func:`i3d_from_2d` (dropout 0.5 before the classifier, as kinetics-i3d)."""
    _check_video_dims("i3d", spatial_dims)
    base = GoogLeNet(GoogLeNetSpec(width_mult=spec.width_mult), 2, in_channels, num_classes, drop_rate=drop_rate)
    return i3d_from_2d(base, spec)


# --------------------------------------------------------------------------------------------
# Registration

_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's video transforms (Kinetics-400)
_KINETICS_STD = (0.22803, 0.22145, 0.216989)
_TRAN18 = "Tran, Wang, Torresani, Ray, LeCun, Paluri. A Closer Look at Spatiotemporal Convolutions for Action Recognition. CVPR 2018"
_VIDEO = dict(task="classify_video", spatial_dims=(3,), in_channels=3)
_TINY_RESNET = {"layers": (1, 1, 1, 1), "widths": (4, 8, 8, 8), "stem_width": 4, "stem_mid": 3}

register("c3d", C3D, C3DSpec(), family="c3d", year=2015,
         paper="Tran, Bourdev, Fergus, Torresani, Paluri. Learning Spatiotemporal Features with 3D Convolutional "
               "Networks. ICCV 2015",
         num_classes=487, input_size=(16, 112, 112), fixed_input_size=True,  # Sports-1M's classes, Fig. 3's clip
         # No published count; 78,409,573 at 101 classes is derived layer by layer in tests/test_video.py.
         extra={"tiny": {"stages": ((4,), (4,), (8, 8), (8, 8), (8, 8)), "fc_width": 16}}, **_VIDEO)

# name: (spec, torchvision's num_params at 400 classes); a comment per row says what differs.
VIDEO_RESNET_SPECS = {
    "r3d_18": (VideoResNetSpec(convs=("3d",) * 4), 33_371_472),  # 3x3x3 everywhere
    "mc3_18": (VideoResNetSpec(convs=("3d",) + ("2d",) * 3), 11_695_440),  # 3-D in stage 1, 2-D after
    "r2plus1d_18": (VideoResNetSpec(convs=("2plus1d",) * 4, stem="2plus1d"), 31_505_325),  # (2+1)D everywhere
}
for _name, (_spec, _params) in VIDEO_RESNET_SPECS.items():
    register(_name, VideoResNet, _spec, family="video_resnet", paper=_TRAN18, year=2018, num_classes=400,
             input_size=(16, 112, 112), mean=_KINETICS_MEAN, std=_KINETICS_STD, reference_params=_params,
             reference="torchvision.models.video (weights meta num_params)", extra={"tiny": _TINY_RESNET}, **_VIDEO)

register("i3d", I3D, I3DSpec(), family="i3d", year=2017,
         paper="Carreira, Zisserman. Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset. CVPR 2017",
         num_classes=400, input_size=(64, 224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
         # Table 1 rounds it to 12M; the exact count is derived from the 2-D network in tests/test_video.py.
         extra={"tiny": {"width_mult": 0.125}}, **_VIDEO)

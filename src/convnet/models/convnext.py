"""ConvNeXt: Z. Liu, H. Mao, C.-Y. Wu, C. Feichtenhofer, T. Darrell, S. Xie, "A ConvNet for the
2020s", CVPR 2022 (arXiv:2201.03545); and ConvNeXt V2: S. Woo, S. Debnath, R. Hu, X. Chen,
Z. Liu, I. S. Kweon, S. Xie, "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked
Autoencoders", CVPR 2023 (arXiv:2301.00808).

ConvNeXt (§2, Fig. 4): a "patchify" stem (4x4 conv, stride 4, then LayerNorm), four stages of
blocks separated by downsampling layers (LayerNorm, then 2x2 conv of stride 2), global average
pooling, LayerNorm and a linear classifier. A block is a 7x7 depthwise conv, one LayerNorm over
channels, a 1x1 conv expanding 4x, GELU, a 1x1 conv projecting back, a per-channel layer scale
(init 1e-6) and stochastic depth on the residual branch. The 1x1 "linear" layers are 1x1 convs
here, so the block is channels-first in 1, 2 and 3 dims; reference checkpoints (nn.Linear in
torchvision, (C,1,1) layer scales) are reshaped by the key map.

ConvNeXt V2 (§3, Fig. 5) drops layer scale and inserts Global Response Normalization after
the GELU: X' = gamma * (X * N(X)) + beta + X with N(X)_c = ||X_c|| / mean_c ||X_c|| (Eq. 1-3).

The paper's modernisation path (§2, Fig. 2) from ResNet-50 to ConvNeXt-T is a list of spec rows
(``modernisation_path()``, registered as ``convnext_path_NN_<step>``), each step one change of
the previous one: stage ratio, patchify stem, depthwise conv, width 96, inverted bottleneck,
depthwise conv moved up, 7x7 kernel, GELU, fewer activations, fewer norms, BN -> LN, separate
downsampling layers (= ConvNeXt-T).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, ConvNetClassifier, FeatureInfo
from ._registry import register


@dataclass(frozen=True)
class ConvNeXtSpec:
    """One row of the ConvNeXt spec table. The defaults are ConvNeXt-T; the fields after
    ``grn`` only change along the modernisation path (Liu et al. 2022, §2)."""

    depths: tuple[int, ...] = (3, 3, 9, 3)  # blocks per stage
    dims: tuple[int, ...] = (96, 192, 384, 768)  # channels of the residual stream per stage
    kernel_size: int = 7  # of the depthwise conv (§2.5)
    layer_scale: float = 1e-6  # initial layer scale; 0 for none (ConvNeXt V2, the path's steps)
    grn: bool = False  # Global Response Normalization after the GELU (ConvNeXt V2)
    # -- the modernisation path ------------------------------------------------------------------
    # "patchify": 4x4/4 conv + norm; "resnet": 7x7/2 conv + norm, 3x3/2 max pool (an act after
    # the norm in either while activations == "all")
    stem: str = "patchify"
    stem_width: int = 0  # stem output channels; 0 means dims[0]
    block: str = "convnext"  # "convnext": kxk depthwise first; "bottleneck": 1x1, kxk, 1x1 (ResNet)
    mlp_ratio: float = 4.0  # inner width / dims[i]: 4 inverted (§2.4), 0.25 for ResNet's bottleneck
    depthwise: bool = True  # the kxk conv of a "bottleneck" block is depthwise (§2.3); else dense
    act_layer: str = "gelu"
    norm_layer: str = "layer"
    activations: str = "one"  # "one": only between the 1x1 convs (§2.6); "all": after every conv and the add
    norms: str = "one"  # "one": only after the depthwise conv (§2.6); "all": after every conv
    downsample: str = "separate"  # "separate": norm + 2x2/2 conv between stages; "block": the first block strides


class ConvNeXtBlock(nn.Module):
    """kxk depthwise conv, norm, 1x1 expand, act, (GRN), 1x1 project, layer scale, drop path.

    Children: ``depthwise``, ``expand``, ``grn``, ``project`` (ConvNormActs: ``.conv``, ``.norm``),
    ``layer_scale``, ``drop_path``, ``shortcut`` and ``act`` (identities in ConvNeXt itself;
    a strided projection and the post-add activation in the path's ResNet-style steps).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
                 spec: ConvNeXtSpec = ConvNeXtSpec(), drop_path: float = 0.0):
        super().__init__()
        d, s = spatial_dims, spec
        all_norms, all_acts = s.norms == "all", s.activations == "all"
        mid = int(out_channels * s.mlp_ratio)
        # The depthwise conv works on the block's input; a strided first block of a stage (the
        # path's steps before separate downsampling) changes the width in the 1x1 convs.
        self.depthwise = L.ConvNormAct(d, in_channels, in_channels, s.kernel_size, stride, groups=in_channels,
                                       norm_layer=s.norm_layer, act_layer=s.act_layer if all_acts else None,
                                       bias=True)
        self.expand = L.ConvNormAct(d, in_channels, mid, 1, norm_layer=s.norm_layer if all_norms else None,
                                    act_layer=s.act_layer)
        self.grn = L.GlobalResponseNorm(mid) if s.grn else nn.Identity()
        self.project = L.ConvNormAct(d, mid, out_channels, 1, norm_layer=s.norm_layer if all_norms else None,
                                     act_layer=None)
        self.layer_scale = L.LayerScale(out_channels, s.layer_scale) if s.layer_scale else nn.Identity()
        self.drop_path = L.DropPath(drop_path)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, s.norm_layer)
        self.act = L.get_act(s.act_layer) if all_acts else nn.Identity()

    def zero_init_last(self) -> None:
        """Start as the identity (after the activation, where the path has one)."""
        _zero_last(self.layer_scale, self.project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise(x)  # kxk depthwise conv and the block's one norm: (B, C_in, *S / stride)
        out = self.expand(out)  # 1x1 to the inverted bottleneck's width, GELU: (B, mid, *S')
        out = self.grn(out)  # ConvNeXt V2's global response norm (identity in V1)
        out = self.project(out)  # 1x1 back: (B, C_out, *S')
        out = self.layer_scale(out)
        out = self.drop_path(out)
        return self.act(out + self.shortcut(x))


class BottleneckBlock(nn.Module):
    """The path's early blocks: 1x1, kxk (dense, or depthwise as in ResNeXt-ify §2.3), 1x1, each
    with norm and activation (none after the last), a shortcut, an activation after the add.
    ``mlp_ratio`` 0.25 is ResNet's bottleneck, 4 the inverted bottleneck (§2.4, Fig. 3b)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
                 spec: ConvNeXtSpec = ConvNeXtSpec(), drop_path: float = 0.0):
        super().__init__()
        d, s = spatial_dims, spec
        mid = int(out_channels * s.mlp_ratio)
        # Stride in the kxk conv, as torchvision's ResNet-50 (4.1 GFLOPs, Fig. 2's start).
        self.conv1 = L.ConvNormAct(d, in_channels, mid, 1, norm_layer=s.norm_layer, act_layer=s.act_layer)
        self.conv2 = L.ConvNormAct(d, mid, mid, s.kernel_size, stride, groups=mid if s.depthwise else 1,
                                   norm_layer=s.norm_layer, act_layer=s.act_layer)
        self.conv3 = L.ConvNormAct(d, mid, out_channels, 1, norm_layer=s.norm_layer, act_layer=None)
        self.layer_scale = L.LayerScale(out_channels, s.layer_scale) if s.layer_scale else nn.Identity()
        self.drop_path = L.DropPath(drop_path)
        self.shortcut = _shortcut(d, in_channels, out_channels, stride, s.norm_layer)
        self.act = L.get_act(s.act_layer)

    def zero_init_last(self) -> None:
        """Start as the identity (after the activation that follows the addition)."""
        _zero_last(self.layer_scale, self.conv3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)  # 1x1: (B, mid, *S)
        out = self.conv2(out)  # kxk, dense or depthwise, strided: (B, mid, *S / stride)
        out = self.conv3(out)  # 1x1: (B, C_out, *S / stride), no activation before the add
        out = self.layer_scale(out)
        out = self.drop_path(out)
        return self.act(out + self.shortcut(x))


def _zero_last(layer_scale: nn.Module, last: L.ConvNormAct) -> None:
    # The branch's last scale: the layer scale, else the last norm's weight, else the last conv's
    # weight (biases start at zero in every initialisation here).
    if isinstance(layer_scale, L.LayerScale):
        nn.init.zeros_(layer_scale.gamma)
    elif getattr(last.norm, "weight", None) is not None:
        nn.init.zeros_(last.norm.weight)
    else:
        nn.init.zeros_(last.conv.weight)


def _shortcut(spatial_dims: int, in_channels: int, out_channels: int, stride: int, norm_layer: str) -> nn.Module:
    # ResNet's projection shortcut ("option B") where a block changes the shape.
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return L.ConvNormAct(spatial_dims, in_channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=None)


BLOCKS = {"convnext": ConvNeXtBlock, "bottleneck": BottleneckBlock}


class ConvNeXtStage(nn.Module):
    """``downsample`` (norm + 2x2/2 conv, or identity) then ``blocks``."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormClassifierHead(ClassifierHead):
    """Global average pooling, a norm over the pooled channels (LayerNorm in ConvNeXt, §2.6),
    dropout and ``fc``."""

    def __init__(self, in_features: int, num_classes: int, norm_layer: str | None = "layer",
                 drop_rate: float = 0.0):
        super().__init__(in_features, num_classes, drop_rate=drop_rate)
        # (B, C) is a 1-d "channels-first" tensor with no spatial axis: BatchNorm1d or LayerNorm.
        self.norm = L.norm(norm_layer, 1, in_features)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)  # (B, C, *S) -> (B, C)
        x = self.norm(x)
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class ConvNeXt(ConvNetClassifier):
    """ConvNeXt (V1, V2 and the modernisation path) in 1, 2 or 3 dims: ``stem``,
    ``stages[i].downsample``, ``stages[i].blocks[j]``, ``head`` (``pool``, ``norm``, ``fc``)."""

    def __init__(self, spec: ConvNeXtSpec = ConvNeXtSpec(), spatial_dims: int = 2, in_channels: int = 3,
                 num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        for field, value, allowed in (("stem", spec.stem, ("patchify", "resnet")), ("block", spec.block, tuple(BLOCKS)),
                                      ("activations", spec.activations, ("one", "all")),
                                      ("norms", spec.norms, ("one", "all")),
                                      ("downsample", spec.downsample, ("separate", "block"))):
            if value not in allowed:
                raise ValueError(f"ConvNeXtSpec.{field} must be one of {allowed}, got {value!r}")
        if len(spec.depths) != len(spec.dims):
            raise ValueError(f"depths {spec.depths} and dims {spec.dims} must have the same length")
        self.spec = spec
        self.spatial_dims = d = L.check_dims(spatial_dims)
        self.in_channels = in_channels
        self.num_classes = num_classes
        stem_width = spec.stem_width or spec.dims[0]
        stem_act = spec.act_layer if spec.activations == "all" else None
        if spec.stem == "patchify":
            # §2.2: non-overlapping 4x4 patches, as ViT/Swin ("patchify"), then a norm.
            self.stem = L.ConvNormAct(d, in_channels, stem_width, 4, 4, padding=0, norm_layer=spec.norm_layer,
                                      act_layer=stem_act, bias=True)
        else:
            self.stem = L.resnet_stem(d, in_channels, stem_width, norm_layer=spec.norm_layer, act_layer=stem_act)
        block_cls = BLOCKS[spec.block]
        # Stochastic depth grows linearly with depth (Huang et al. 2016), as the reference.
        drop_path_rates = iter(L.drop_path_rates(sum(spec.depths), drop_path_rate))
        channels, reduction = stem_width, 4
        self.stages, self.feature_info = nn.ModuleList(), []
        for i, (depth, dim) in enumerate(zip(spec.depths, spec.dims)):
            stride = 1 if i == 0 else 2
            downsample: nn.Module = nn.Identity()
            if spec.downsample == "separate" and (stride > 1 or channels != dim):
                # §2.6: "a 2x2 conv layer with stride 2", with a norm before it for stability.
                downsample = nn.Sequential()
                downsample.add_module("norm", L.norm(spec.norm_layer, d, channels))
                downsample.add_module("conv", L.conv(d, channels, dim, stride, stride, padding=0))
                channels, stride = dim, 1
            blocks = []
            for j in range(depth):
                blocks.append(block_cls(d, channels, dim, stride if j == 0 else 1, spec, next(drop_path_rates)))
                channels = dim
            reduction *= 2 if i > 0 else 1
            self.stages.append(ConvNeXtStage(downsample, blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{i}"))
        # §2.6: LayerNorm after the final pooling comes with separate downsampling layers;
        # ResNet's head (the path's earlier steps) is pooling and fc only.
        head_norm = spec.norm_layer if spec.downsample == "separate" else None
        self.head = NormClassifierHead(channels, num_classes, head_norm, drop_rate)
        self.cam_layer = f"stages.{len(spec.depths) - 1}"
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference initialisation: truncated normal (std 0.02) weights, zero biases.
        for m in self.modules():
            if isinstance(m, (*L.CONV_TYPES, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


# -- the modernisation path (Liu et al. 2022, §2, Fig. 2) ---------------------------------------

# Step 0: ResNet-50 as torchvision has it (bottleneck 1x1-3x3-1x1, BN, ReLU, projection
# shortcuts, the stride in the 3x3): 25,557,032 parameters, 4.1 GMACs at 224.
_RESNET50 = ConvNeXtSpec(depths=(3, 4, 6, 3), dims=(256, 512, 1024, 2048), kernel_size=3, layer_scale=0.0,
                         stem="resnet", stem_width=64, block="bottleneck", mlp_ratio=0.25, depthwise=False,
                         act_layer="relu", norm_layer="batch", activations="all", norms="all", downsample="block")

# step name: the change to the previous step, and Fig. 2's GFLOPs (multiply-adds) at 224.
_PATH_CHANGES: dict[str, dict] = {
    "resnet50": dict(change={}, gflops=4.1),  # the start
    "stage_ratio": dict(change=dict(depths=(3, 3, 9, 3)), gflops=4.5),  # §2.2 "changing stage compute ratio"
    "patchify_stem": dict(change=dict(stem="patchify"), gflops=4.4),  # §2.2 4x4/4 stem
    "depthwise": dict(change=dict(depthwise=True), gflops=2.4),  # §2.3 ResNeXt-ify: groups = channels
    "width_96": dict(change=dict(dims=(384, 768, 1536, 3072), stem_width=96), gflops=5.3),  # §2.3: width 64 -> 96
    "inverted_bottleneck": dict(change=dict(dims=(96, 192, 384, 768), stem_width=0, mlp_ratio=4.0),
                                gflops=4.6),  # §2.4, Fig. 3b
    "move_up_dwconv": dict(change=dict(block="convnext"), gflops=4.1),  # §2.5, Fig. 3c
    "kernel_7": dict(change=dict(kernel_size=7), gflops=4.2),  # §2.5
    "gelu": dict(change=dict(act_layer="gelu"), gflops=4.2),  # §2.6
    "fewer_activations": dict(change=dict(activations="one"), gflops=4.2),  # §2.6
    "fewer_norms": dict(change=dict(norms="one"), gflops=4.2),  # §2.6
    "layer_norm": dict(change=dict(norm_layer="layer"), gflops=4.2),  # §2.6 BN -> LN
    # §2.6: separate downsampling layers (and the training recipe's layer scale, §2.1): ConvNeXt-T.
    "separate_downsampling": dict(change=dict(downsample="separate", layer_scale=1e-6), gflops=4.5),
}


def modernisation_path() -> list[tuple[str, ConvNeXtSpec, float]]:
    """The steps of Fig. 2 (Liu et al. 2022) from ResNet-50 to ConvNeXt-T as
    ``(step name, spec, the paper's GFLOPs at 224)``, each spec one change of the one before.

    Layer scale belongs to the training recipe (§2.1) rather than to the architecture and adds
    a few thousand parameters; the steps before the last leave it out, so that step 0 is
    exactly torchvision's ResNet-50 and the last is exactly ``convnext_tiny``.
    """
    steps, spec = [], _RESNET50
    for name, row in _PATH_CHANGES.items():
        spec = dataclasses.replace(spec, **row["change"])
        steps.append((name, spec, row["gflops"]))
    return steps


# -- spec tables and registration ---------------------------------------------------------------

_PAPER = "Liu, Mao, Wu, Feichtenhofer, Darrell, Xie. A ConvNet for the 2020s. CVPR 2022"
_PAPER_V2 = ("Woo, Debnath, Hu, Chen, Liu, Kweon, Xie. ConvNeXt V2: Co-designing and Scaling ConvNets "
             "with Masked Autoencoders. CVPR 2023")
_TV = "torchvision.models.convnext"
_TIMM = "timm.models.convnext"
# Contract tests build every variant at this size.
_TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16))
_TINY_PATH = dict(depths=(1, 1, 1, 1), dims=(16, 16, 32, 32), stem_width=8)

# Liu et al. 2022 Table 1 / §3 (depths C, dims B of "C = (...), B = (...)"); counts of
# torchvision (T/S/B/L) and timm (XL).
CONVNEXT_SPECS: dict[str, dict] = {
    "convnext_tiny": dict(spec=ConvNeXtSpec(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),  # ConvNeXt-T
                          reference_params=28_589_128, reference=_TV),
    "convnext_small": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),  # ConvNeXt-S
                           reference_params=50_223_688, reference=_TV),
    "convnext_base": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),  # ConvNeXt-B
                          reference_params=88_591_464, reference=_TV),
    "convnext_large": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),  # ConvNeXt-L
                           reference_params=197_767_336, reference=_TV),
    "convnext_xlarge": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),  # ConvNeXt-XL
                            reference_params=350_196_968, reference=f"{_TIMM} (convnext_xlarge)"),
}

# Woo et al. 2023 Table 8 (depths, dims), with GRN and without layer scale; counts of timm's
# convnextv2_* models.
_V2 = dict(layer_scale=0.0, grn=True)
CONVNEXTV2_SPECS: dict[str, dict] = {
    "convnextv2_atto": dict(spec=ConvNeXtSpec(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), **_V2),  # A
                            reference_params=3_708_400),
    "convnextv2_femto": dict(spec=ConvNeXtSpec(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), **_V2),  # F
                             reference_params=5_233_240),
    "convnextv2_pico": dict(spec=ConvNeXtSpec(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), **_V2),  # P
                            reference_params=9_066_280),
    "convnextv2_nano": dict(spec=ConvNeXtSpec(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), **_V2),  # N
                            reference_params=15_623_800),
    "convnextv2_tiny": dict(spec=ConvNeXtSpec(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), **_V2),  # T
                            reference_params=28_635_496),
    "convnextv2_base": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), **_V2),  # B
                            reference_params=88_717_800),
    "convnextv2_large": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), **_V2),  # L
                             reference_params=197_956_840),
    "convnextv2_huge": dict(spec=ConvNeXtSpec(depths=(3, 3, 27, 3), dims=(352, 704, 1408, 2816), **_V2),  # H
                            reference_params=660_289_640),
}

for _name, _row in CONVNEXT_SPECS.items():
    register(_name, ConvNeXt, family="convnext", paper=_PAPER, year=2022, extra={"tiny": _TINY}, **_row)

for _name, _row in CONVNEXTV2_SPECS.items():
    register(_name, ConvNeXt, family="convnextv2", paper=_PAPER_V2, year=2023, reference=f"{_TIMM} ({_name})",
             extra={"tiny": _TINY}, **_row)

# The path's steps before ConvNeXt-T itself; only step 0 has a reference count (ResNet-50's).
for _i, (_step, _spec, _gflops) in enumerate(modernisation_path()[:-1]):
    register(f"convnext_path_{_i:02d}_{_step}", ConvNeXt, _spec, family="convnext", paper=_PAPER, year=2022,
             reference_params=25_557_032 if _i == 0 else None,
             reference="torchvision.models.resnet (resnet50)" if _i == 0 else
             f"Liu et al. 2022 Fig. 2: {_gflops} GFLOPs at 224",
             extra={"tiny": _TINY_PATH if _spec.block == "bottleneck" else _TINY})

"""The weights table: published torchvision and timm files for convnet's models, one row each.

Every row is taken from the source's own metadata and says where:

- **torchvision 0.29** (``torchvision/models/*.py``, the ``*_Weights`` enums): the URL, the
  parameter count (``num_params``), the rounded file size in MiB (``_file_size``, a bound on the
  download), the accuracy (``_metrics``) and the preprocessing (``transforms``: resize, centre
  crop, mean, std, interpolation), tagged ``tv_in1k`` (``IMAGENET1K_V1``), ``tv2_in1k`` (V2),
  ``tv_swag_e2e_in1k`` / ``tv_swag_lin_in1k`` (SWAG), ``tv_coco`` (``COCO_V1``),
  ``tv_coco_voc`` (``COCO_WITH_VOC_LABELS_V1``) and ``tv_k400`` (``KINETICS400_V1``); the
  default of a model is torchvision's ``DEFAULT``. ``VGG16_Weights.IMAGENET1K_FEATURES`` is left
  out: its classifier is NaN, which the loader refuses.
- **timm 1.0.31** (``timm.models.get_pretrained_cfg``): the file on the Hugging Face Hub
  (``timm/<name>``, safetensors), its preprocessing (the eval transform of ``input_size``,
  ``crop_pct``: resize the shorter side to floor(size / crop_pct), then crop), the license, and
  the accuracy from timm's ``results/results-imagenet.csv`` (huggingface/pytorch-image-models
  @0173a139), measured at the size and crop named in ``eval_at`` (timm evaluates at its
  ``test_input_size``); rows without a figure are models that file does not list. Tagged
  ``timm_`` + timm's tag.

Hashes. torchvision's file names end in the first 8 hex digits of the file's SHA-256, and
torchvision checks them when it loads (``check_hash=True``, ``torch.hub.HASH_REGEX``); a row
verifies that prefix. For the files in ``_FULL_SHA256`` the whole digest and the exact size are
known from public records of ``sha256sum`` of the published files (third-party notes found by
code search, not an official list; each digest begins with the prefix torchvision publishes,
and each size rounds to torchvision's ``_file_size``, which tests/test_pretrained.py checks);
those rows verify the whole digest and the exact size. timm's Hub files carry no hash in their
names and timm publishes none; they are verified against the SHA-256 the Hub sends with each
file (``X-Linked-Etag``) and read as safetensors (no code can run from them). The legacy Xception
file (a GitHub release of timm) has no known hash at all.

Preprocessing notes. GoogLeNet and Inception-v3: torchvision normalises with ImageNet's mean
and std and its ``transform_input=True`` maps that to (x - 0.5) / 0.5, the input of Google's
ported weights; convnet's models have no such step (models/inception.py), so their rows
normalise with mean = std = 0.5 directly, which gives the same input. torchvision's detectors
normalise and resize inside the model (their rows have no mean or std).
"""
from __future__ import annotations

import math
from typing import Any

from .hub import name_hash_prefix
from .pretrained import PretrainedWeights, WeightsPreprocess, register_weights

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # Google's ports and timm's ViT / ResNetV2: inputs in [-1, 1]
_KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))  # torchvision's VideoClassification

# torchvision's metric data sets, by its _metrics keys.
_COCO = "COCO-val2017"
_COCO_VOC = "COCO-val2017-VOC-labels"
_K400 = "Kinetics-400"


def _cls(resize: int, crop: int, interpolation: str = "bilinear",
         stats: tuple[tuple[float, ...], tuple[float, ...]] = _IMAGENET) -> WeightsPreprocess:
    """Classification: shorter side to ``resize``, centre crop ``crop`` x ``crop``, normalise."""
    return WeightsPreprocess(resize=resize, crop=(crop, crop), mean=stats[0], std=stats[1],
                             interpolation=interpolation)


_SEG = WeightsPreprocess(resize=520, mean=_IMAGENET[0], std=_IMAGENET[1])  # SemanticSegmentation(resize_size=520)
_DET = WeightsPreprocess()  # ObjectDetection(): the model's own transform resizes and normalises
_VIDEO = WeightsPreprocess(resize=(128, 171), crop=(112, 112), mean=_KINETICS[0], std=_KINETICS[1])


def _acc(top1: float, top5: float) -> dict[str, float]:
    return {"acc@1": top1, "acc@5": top5}


# file -> (SHA-256, bytes): public sha256sum records of the published files (see the docstring).
_FULL_SHA256: dict[str, tuple[str, int | None]] = {
    "resnet18-f37072fd.pth": ("f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46_830_571),
    "resnet34-b627a593.pth": ("b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f", 87_319_819),
    "resnet50-0676ba61.pth": ("0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", 102_530_333),
    "resnet50-11ad3fa6.pth": ("11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca", None),
    "efficientnet_b0_rwightman-7f5810bc.pth": (
        "7f5810bc96def8f7552d5b7e68d53c4786f81167d28291b21c0d90e1fca14934", 21_444_401),
    "efficientnet_b5_lukemelas-1a07897c.pth": (
        "1a07897c0d357db7981640f6be44a63420f11deb932344a69768b62ebe272946", 122_540_693),
    "mobilenet_v2-7ebf99e0.pth": ("7ebf99e03e254b273379b23edca7ec0da9f48273b23a332b93c1c99d49e86e8f", 14_258_573),
    "mobilenet_v3_small-047dcff4.pth": (
        "047dcff4addef86ea5bc2eff13c9614dc11f47ab1160d0a71a25e7db994f4e1f", 10_306_551),
    "mobilenet_v3_large-8738ca79.pth": (
        "8738ca797c879b547d18bbd15da5736ff2557b2036a9af72225393ca61759a04", 22_139_423),
    "vgg16-397923af.pth": ("397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881),
    "vgg19-dcbb9e9d.pth": ("dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574_673_361),
    "vit_b_16-c867db91.pth": ("c867db91d3e12c6cbadabb610d73c24a546bf82d8c03a9fea34f43a712ddb0e9", 346_328_529),
    "fcn_resnet50_coco-1167a1af.pth": (
        "1167a1affa42e1e62858f8d3fac12d109e0108327ffc91c5855a324b11683c36", 141_567_418),
    "deeplabv3_resnet50_coco-cd0a2569.pth": (
        "cd0a25694c4a0f7106b38f4938bf90a874f2f241cc410b8f63c7024399538f06", 168_312_152),
    "deeplabv3_mobilenet_v3_large-fc3c493d.pth": (
        "fc3c493d68e89cc31ef488c803d5d7dd2f3190fb570598faa49fef69be8e5e70", 44_356_159),
    "lraspp_mobilenet_v3_large-d234d4ea.pth": (
        "d234d4eae9d55d5f76de18b77cf0dc62c66fe5c5482758209d00f950c92bb280", 13_097_061),
    "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth": (
        "258fb6c638b15964ddcdd1ae0748c5eef1be9e732750120cc857feed3faac384", 167_502_836),
    "retinanet_resnet50_fpn_coco-eeacb38b.pth": (
        "eeacb38b7cec8cf93c57867e05eaab621047f19b0d2ec5accaa405f690da15b7", 136_595_076),
    "ssd300_vgg16_coco-b556d3b4.pth": (
        "b556d3b43ab6c3f63d81bfb8835fe8756ac22da664357da100dccf96b6a6b42d", 142_594_222),
}
_FULL_SHA256_SOURCE = "public sha256sum records of the published file (code search); prefix checked"

_TV_URL = "https://download.pytorch.org/models/"
_HF_URL = "https://huggingface.co/{repo}/resolve/main/model.safetensors"


def _mib_bound(mib: float) -> int:
    """Bytes at most, from a size torchvision rounds to 3 decimals of a MiB."""
    return math.ceil((mib + 0.0005) * 2**20)


def _tv(model: str, tag: str, file: str, enum: str, *, params: int, mib: float, metrics: dict[str, float],
        pre: WeightsPreprocess, layout: str, data: str = "ImageNet-1K", overrides: dict[str, Any] | None = None,
        default: bool = False) -> None:
    """A torchvision row: ``file`` under download.pytorch.org, from the ``enum`` weights."""
    sha256, size = _FULL_SHA256.get(file, (name_hash_prefix(file), None))
    register_weights(PretrainedWeights(
        model=model, tag=tag, url=_TV_URL + file, layout=layout, preprocess=pre,
        num_classes={"ImageNet-1K": 1000, _COCO: 91, _COCO_VOC: 21, _K400: 400}[data], dataset=data,
        metrics=metrics, source=f"torchvision 0.29 {enum}", metrics_source=f"torchvision 0.29 {enum} _metrics",
        sha256=sha256,
        sha256_source=_FULL_SHA256_SOURCE if file in _FULL_SHA256 else "torchvision's file name (SHA-256 prefix)",
        size=size, max_size=None if size is not None else _mib_bound(mib), num_params=params,
        overrides=overrides or {}, default=default))


def _timm(model: str, name: str, *, params: int, pre: WeightsPreprocess, layout: str,
          metrics: dict[str, float] | None = None, eval_at: tuple[int, float] | None = None, url: str = "",
          license: str = "apache-2.0", default: bool = False) -> None:
    """A timm row: the Hub's ``timm/<name>`` safetensors file (or ``url`` where timm has no Hub copy)."""
    measured = (f"timm results/results-imagenet.csv (huggingface/pytorch-image-models@0173a139), measured at "
                f"{eval_at[0]} px, crop {eval_at[1]}") if eval_at else ""
    register_weights(PretrainedWeights(
        model=model, tag="timm_" + name.split(".", 1)[1], url=url or _HF_URL.format(repo=f"timm/{name}"),
        file_name="" if url else f"timm/{name}/model.safetensors", layout=layout, preprocess=pre, num_classes=1000,
        dataset="ImageNet-1K", metrics=metrics or {}, source=f"timm 1.0.31 pretrained_cfg {name}",
        metrics_source=measured,
        num_params=params, license=license, default=default))

# torchvision.models.alexnet
_tv("alexnet", "tv_in1k", "alexnet-owt-7be5be79.pth", "AlexNet_Weights.IMAGENET1K_V1",
    params=61_100_840, mib=233.087, metrics=_acc(56.522, 79.066), pre=_cls(256, 224),
    layout="torchvision.models.alexnet", default=True)

# torchvision.models.convnext
_tv("convnext_base", "tv_in1k", "convnext_base-6075fbad.pth", "ConvNeXt_Base_Weights.IMAGENET1K_V1",
    params=88_591_464, mib=338.064, metrics=_acc(84.062, 96.87), pre=_cls(232, 224),
    layout="torchvision.models.convnext", default=True)
_tv("convnext_large", "tv_in1k", "convnext_large-ea097f82.pth", "ConvNeXt_Large_Weights.IMAGENET1K_V1",
    params=197_767_336, mib=754.537, metrics=_acc(84.414, 96.976), pre=_cls(232, 224),
    layout="torchvision.models.convnext", default=True)
_tv("convnext_small", "tv_in1k", "convnext_small-0c510722.pth", "ConvNeXt_Small_Weights.IMAGENET1K_V1",
    params=50_223_688, mib=191.703, metrics=_acc(83.616, 96.65), pre=_cls(230, 224),
    layout="torchvision.models.convnext", default=True)
_tv("convnext_tiny", "tv_in1k", "convnext_tiny-983f1562.pth", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
    params=28_589_128, mib=109.119, metrics=_acc(82.52, 96.146), pre=_cls(236, 224),
    layout="torchvision.models.convnext", default=True)

# torchvision.models.densenet
_tv("densenet121", "tv_in1k", "densenet121-a639ec97.pth", "DenseNet121_Weights.IMAGENET1K_V1",
    params=7_978_856, mib=30.845, metrics=_acc(74.434, 91.972), pre=_cls(256, 224),
    layout="torchvision.models.densenet", default=True)
_tv("densenet161", "tv_in1k", "densenet161-8d451a50.pth", "DenseNet161_Weights.IMAGENET1K_V1",
    params=28_681_000, mib=110.369, metrics=_acc(77.138, 93.56), pre=_cls(256, 224),
    layout="torchvision.models.densenet", default=True)
_tv("densenet169", "tv_in1k", "densenet169-b2777c0a.pth", "DenseNet169_Weights.IMAGENET1K_V1",
    params=14_149_480, mib=54.708, metrics=_acc(75.6, 92.806), pre=_cls(256, 224),
    layout="torchvision.models.densenet", default=True)
_tv("densenet201", "tv_in1k", "densenet201-c1103571.pth", "DenseNet201_Weights.IMAGENET1K_V1",
    params=20_013_928, mib=77.373, metrics=_acc(76.896, 93.37), pre=_cls(256, 224),
    layout="torchvision.models.densenet", default=True)

# torchvision.models.efficientnet
_tv("efficientnet_b0", "tv_in1k", "efficientnet_b0_rwightman-7f5810bc.pth", "EfficientNet_B0_Weights.IMAGENET1K_V1",
    params=5_288_548, mib=20.451, metrics=_acc(77.692, 93.532), pre=_cls(256, 224, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b1", "tv_in1k", "efficientnet_b1_rwightman-bac287d4.pth", "EfficientNet_B1_Weights.IMAGENET1K_V1",
    params=7_794_184, mib=30.134, metrics=_acc(78.642, 94.186), pre=_cls(256, 240, "bicubic"),
    layout="torchvision.models.efficientnet")
_tv("efficientnet_b1", "tv2_in1k", "efficientnet_b1-c27df63c.pth", "EfficientNet_B1_Weights.IMAGENET1K_V2",
    params=7_794_184, mib=30.136, metrics=_acc(79.838, 94.934), pre=_cls(255, 240),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b2", "tv_in1k", "efficientnet_b2_rwightman-c35c1473.pth", "EfficientNet_B2_Weights.IMAGENET1K_V1",
    params=9_109_994, mib=35.174, metrics=_acc(80.608, 95.31), pre=_cls(288, 288, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b3", "tv_in1k", "efficientnet_b3_rwightman-b3899882.pth", "EfficientNet_B3_Weights.IMAGENET1K_V1",
    params=12_233_232, mib=47.184, metrics=_acc(82.008, 96.054), pre=_cls(320, 300, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b4", "tv_in1k", "efficientnet_b4_rwightman-23ab8bcd.pth", "EfficientNet_B4_Weights.IMAGENET1K_V1",
    params=19_341_616, mib=74.489, metrics=_acc(83.384, 96.594), pre=_cls(384, 380, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b5", "tv_in1k", "efficientnet_b5_lukemelas-1a07897c.pth", "EfficientNet_B5_Weights.IMAGENET1K_V1",
    params=30_389_784, mib=116.864, metrics=_acc(83.444, 96.628), pre=_cls(456, 456, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b6", "tv_in1k", "efficientnet_b6_lukemelas-24a108a5.pth", "EfficientNet_B6_Weights.IMAGENET1K_V1",
    params=43_040_704, mib=165.362, metrics=_acc(84.008, 96.916), pre=_cls(528, 528, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_b7", "tv_in1k", "efficientnet_b7_lukemelas-c5b4e57e.pth", "EfficientNet_B7_Weights.IMAGENET1K_V1",
    params=66_347_960, mib=254.675, metrics=_acc(84.122, 96.908), pre=_cls(600, 600, "bicubic"),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_v2_l", "tv_in1k", "efficientnet_v2_l-59c71312.pth", "EfficientNet_V2_L_Weights.IMAGENET1K_V1",
    params=118_515_272, mib=454.573, metrics=_acc(85.808, 97.788), pre=_cls(480, 480, "bicubic", stats=_HALF),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_v2_m", "tv_in1k", "efficientnet_v2_m-dc08266a.pth", "EfficientNet_V2_M_Weights.IMAGENET1K_V1",
    params=54_139_356, mib=208.01, metrics=_acc(85.112, 97.156), pre=_cls(480, 480),
    layout="torchvision.models.efficientnet", default=True)
_tv("efficientnet_v2_s", "tv_in1k", "efficientnet_v2_s-dd5fe13b.pth", "EfficientNet_V2_S_Weights.IMAGENET1K_V1",
    params=21_458_488, mib=82.704, metrics=_acc(84.228, 96.878), pre=_cls(384, 384),
    layout="torchvision.models.efficientnet", default=True)

# torchvision.models.googlenet (mean = std = 0.5 for transform_input, see the docstring)
_tv("googlenet", "tv_in1k", "googlenet-1378be20.pth", "GoogLeNet_Weights.IMAGENET1K_V1",
    params=6_624_904, mib=49.731, metrics=_acc(69.778, 89.53), pre=_cls(256, 224, stats=_HALF),
    layout="torchvision.models.googlenet", default=True)

# torchvision.models.inception (mean = std = 0.5 for transform_input, see the docstring)
_tv("inception_v3", "tv_in1k", "inception_v3_google-0cc3c7bd.pth", "Inception_V3_Weights.IMAGENET1K_V1",
    params=27_161_264, mib=103.903, metrics=_acc(77.294, 93.45), pre=_cls(342, 299, stats=_HALF),
    layout="torchvision.models.inception", default=True)

# torchvision.models.mobilenetv2
_tv("mobilenet_v2", "tv_in1k", "mobilenet_v2-b0353104.pth", "MobileNet_V2_Weights.IMAGENET1K_V1",
    params=3_504_872, mib=13.555, metrics=_acc(71.878, 90.286), pre=_cls(256, 224),
    layout="torchvision.models.mobilenetv2")
_tv("mobilenet_v2", "tv2_in1k", "mobilenet_v2-7ebf99e0.pth", "MobileNet_V2_Weights.IMAGENET1K_V2",
    params=3_504_872, mib=13.598, metrics=_acc(72.154, 90.822), pre=_cls(232, 224),
    layout="torchvision.models.mobilenetv2", default=True)

# torchvision.models.mobilenetv3
_tv("mobilenet_v3_large", "tv_in1k", "mobilenet_v3_large-8738ca79.pth", "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
    params=5_483_032, mib=21.114, metrics=_acc(74.042, 91.34), pre=_cls(256, 224),
    layout="torchvision.models.mobilenetv3")
_tv("mobilenet_v3_large", "tv2_in1k", "mobilenet_v3_large-5c1a4163.pth", "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
    params=5_483_032, mib=21.107, metrics=_acc(75.274, 92.566), pre=_cls(232, 224),
    layout="torchvision.models.mobilenetv3", default=True)
_tv("mobilenet_v3_small", "tv_in1k", "mobilenet_v3_small-047dcff4.pth", "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
    params=2_542_856, mib=9.829, metrics=_acc(67.668, 87.402), pre=_cls(256, 224),
    layout="torchvision.models.mobilenetv3", default=True)

# torchvision.models.resnet
_tv("resnet101", "tv_in1k", "resnet101-63fe2227.pth", "ResNet101_Weights.IMAGENET1K_V1",
    params=44_549_160, mib=170.511, metrics=_acc(77.374, 93.546), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("resnet101", "tv2_in1k", "resnet101-cd907fc2.pth", "ResNet101_Weights.IMAGENET1K_V2",
    params=44_549_160, mib=170.53, metrics=_acc(81.886, 95.78), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnet152", "tv_in1k", "resnet152-394f9c45.pth", "ResNet152_Weights.IMAGENET1K_V1",
    params=60_192_808, mib=230.434, metrics=_acc(78.312, 94.046), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("resnet152", "tv2_in1k", "resnet152-f82ba261.pth", "ResNet152_Weights.IMAGENET1K_V2",
    params=60_192_808, mib=230.474, metrics=_acc(82.284, 96.002), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnet18", "tv_in1k", "resnet18-f37072fd.pth", "ResNet18_Weights.IMAGENET1K_V1",
    params=11_689_512, mib=44.661, metrics=_acc(69.758, 89.078), pre=_cls(256, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnet34", "tv_in1k", "resnet34-b627a593.pth", "ResNet34_Weights.IMAGENET1K_V1",
    params=21_797_672, mib=83.275, metrics=_acc(73.314, 91.42), pre=_cls(256, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnet50", "tv_in1k", "resnet50-0676ba61.pth", "ResNet50_Weights.IMAGENET1K_V1",
    params=25_557_032, mib=97.781, metrics=_acc(76.13, 92.862), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("resnet50", "tv2_in1k", "resnet50-11ad3fa6.pth", "ResNet50_Weights.IMAGENET1K_V2",
    params=25_557_032, mib=97.79, metrics=_acc(80.858, 95.434), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnext101_32x8d", "tv_in1k", "resnext101_32x8d-8ba56ff5.pth", "ResNeXt101_32X8D_Weights.IMAGENET1K_V1",
    params=88_791_336, mib=339.586, metrics=_acc(79.312, 94.526), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("resnext101_32x8d", "tv2_in1k", "resnext101_32x8d-110c445d.pth", "ResNeXt101_32X8D_Weights.IMAGENET1K_V2",
    params=88_791_336, mib=339.673, metrics=_acc(82.834, 96.228), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)
_tv("resnext50_32x4d", "tv_in1k", "resnext50_32x4d-7cdf4587.pth", "ResNeXt50_32X4D_Weights.IMAGENET1K_V1",
    params=25_028_904, mib=95.789, metrics=_acc(77.618, 93.698), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("resnext50_32x4d", "tv2_in1k", "resnext50_32x4d-1a0047aa.pth", "ResNeXt50_32X4D_Weights.IMAGENET1K_V2",
    params=25_028_904, mib=95.833, metrics=_acc(81.198, 95.34), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)

# torchvision.models.vgg
_tv("vgg11", "tv_in1k", "vgg11-8a719046.pth", "VGG11_Weights.IMAGENET1K_V1",
    params=132_863_336, mib=506.84, metrics=_acc(69.02, 88.628), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg11)", default=True)
_tv("vgg11_bn", "tv_in1k", "vgg11_bn-6002323d.pth", "VGG11_BN_Weights.IMAGENET1K_V1",
    params=132_868_840, mib=506.881, metrics=_acc(70.37, 89.81), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg11_bn)", default=True)
_tv("vgg13", "tv_in1k", "vgg13-19584684.pth", "VGG13_Weights.IMAGENET1K_V1",
    params=133_047_848, mib=507.545, metrics=_acc(69.928, 89.246), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg13)", default=True)
_tv("vgg13_bn", "tv_in1k", "vgg13_bn-abd245e5.pth", "VGG13_BN_Weights.IMAGENET1K_V1",
    params=133_053_736, mib=507.59, metrics=_acc(71.586, 90.374), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg13_bn)", default=True)
_tv("vgg16", "tv_in1k", "vgg16-397923af.pth", "VGG16_Weights.IMAGENET1K_V1",
    params=138_357_544, mib=527.796, metrics=_acc(71.592, 90.382), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg16)", default=True)
_tv("vgg16_bn", "tv_in1k", "vgg16_bn-6c64b313.pth", "VGG16_BN_Weights.IMAGENET1K_V1",
    params=138_365_992, mib=527.866, metrics=_acc(73.36, 91.516), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg16_bn)", default=True)
_tv("vgg19", "tv_in1k", "vgg19-dcbb9e9d.pth", "VGG19_Weights.IMAGENET1K_V1",
    params=143_667_240, mib=548.051, metrics=_acc(72.376, 90.876), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg19)", default=True)
_tv("vgg19_bn", "tv_in1k", "vgg19_bn-c79401a0.pth", "VGG19_BN_Weights.IMAGENET1K_V1",
    params=143_678_248, mib=548.143, metrics=_acc(74.218, 91.842), pre=_cls(256, 224),
    layout="torchvision.models.vgg (vgg19_bn)", default=True)

# torchvision.models.vision_transformer
_tv("vit_b_16", "tv_in1k", "vit_b_16-c867db91.pth", "ViT_B_16_Weights.IMAGENET1K_V1",
    params=86_567_656, mib=330.285, metrics=_acc(81.072, 95.318), pre=_cls(256, 224),
    layout="torchvision.models.vision_transformer", default=True)
_tv("vit_b_16", "tv_swag_e2e_in1k", "vit_b_16_swag-9ac1b537.pth", "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1",
    params=86_859_496, mib=331.398, metrics=_acc(85.304, 97.65), pre=_cls(384, 384, "bicubic"),
    layout="torchvision.models.vision_transformer", overrides={'img_size': 384})
_tv("vit_b_16", "tv_swag_lin_in1k", "vit_b_16_lc_swag-4e70ced5.pth", "ViT_B_16_Weights.IMAGENET1K_SWAG_LINEAR_V1",
    params=86_567_656, mib=330.285, metrics=_acc(81.886, 96.18), pre=_cls(224, 224, "bicubic"),
    layout="torchvision.models.vision_transformer")
_tv("vit_l_16", "tv_in1k", "vit_l_16-852ce7e3.pth", "ViT_L_16_Weights.IMAGENET1K_V1",
    params=304_326_632, mib=1161.023, metrics=_acc(79.662, 94.638), pre=_cls(242, 224),
    layout="torchvision.models.vision_transformer", default=True)
_tv("vit_l_16", "tv_swag_e2e_in1k", "vit_l_16_swag-4f3808c9.pth", "ViT_L_16_Weights.IMAGENET1K_SWAG_E2E_V1",
    params=305_174_504, mib=1164.258, metrics=_acc(88.064, 98.512), pre=_cls(512, 512, "bicubic"),
    layout="torchvision.models.vision_transformer", overrides={'img_size': 512})
_tv("vit_l_16", "tv_swag_lin_in1k", "vit_l_16_lc_swag-4d563306.pth", "ViT_L_16_Weights.IMAGENET1K_SWAG_LINEAR_V1",
    params=304_326_632, mib=1161.023, metrics=_acc(85.146, 97.422), pre=_cls(224, 224, "bicubic"),
    layout="torchvision.models.vision_transformer")

# torchvision.models.resnet
_tv("wide_resnet101_2", "tv_in1k", "wide_resnet101_2-32ee1156.pth", "Wide_ResNet101_2_Weights.IMAGENET1K_V1",
    params=126_886_696, mib=242.896, metrics=_acc(78.848, 94.284), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("wide_resnet101_2", "tv2_in1k", "wide_resnet101_2-d733dc28.pth", "Wide_ResNet101_2_Weights.IMAGENET1K_V2",
    params=126_886_696, mib=484.747, metrics=_acc(82.51, 96.02), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)
_tv("wide_resnet50_2", "tv_in1k", "wide_resnet50_2-95faca4d.pth", "Wide_ResNet50_2_Weights.IMAGENET1K_V1",
    params=68_883_240, mib=131.82, metrics=_acc(78.468, 94.086), pre=_cls(256, 224),
    layout="torchvision.models.resnet")
_tv("wide_resnet50_2", "tv2_in1k", "wide_resnet50_2-9ba9bcbe.pth", "Wide_ResNet50_2_Weights.IMAGENET1K_V2",
    params=68_883_240, mib=263.124, metrics=_acc(81.602, 95.758), pre=_cls(232, 224),
    layout="torchvision.models.resnet", default=True)

# torchvision.models.segmentation.deeplabv3
_tv("deeplabv3_mobilenet_v3_large", "tv_coco_voc", "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
    "DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
    params=11_029_328, mib=42.301, metrics={"miou": 60.3, "pixel_acc": 91.2}, pre=_SEG,
    layout="torchvision.models.segmentation (deeplabv3_mobilenet_v3_large)", data=_COCO_VOC, default=True)
_tv("deeplabv3_resnet101", "tv_coco_voc", "deeplabv3_resnet101_coco-586e9e4e.pth",
    "DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
    params=60_996_202, mib=233.217, metrics={"miou": 67.4, "pixel_acc": 92.4}, pre=_SEG,
    layout="torchvision.models.segmentation (deeplabv3_resnet*)", data=_COCO_VOC, default=True)
_tv("deeplabv3_resnet50", "tv_coco_voc", "deeplabv3_resnet50_coco-cd0a2569.pth",
    "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
    params=42_004_074, mib=160.515, metrics={"miou": 66.4, "pixel_acc": 92.4}, pre=_SEG,
    layout="torchvision.models.segmentation (deeplabv3_resnet*)", data=_COCO_VOC, default=True)

# torchvision.models.segmentation.fcn
_tv("fcn_resnet101", "tv_coco_voc", "fcn_resnet101_coco-7ecb50ca.pth",
    "FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
    params=54_314_346, mib=207.711, metrics={"miou": 63.7, "pixel_acc": 91.9}, pre=_SEG,
    layout="torchvision.models.segmentation (fcn_resnet*)", data=_COCO_VOC, default=True)
_tv("fcn_resnet50", "tv_coco_voc", "fcn_resnet50_coco-1167a1af.pth", "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
    params=35_322_218, mib=135.009, metrics={"miou": 60.5, "pixel_acc": 91.4}, pre=_SEG,
    layout="torchvision.models.segmentation (fcn_resnet*)", data=_COCO_VOC, default=True)

# torchvision.models.segmentation.lraspp
_tv("lraspp_mobilenet_v3_large", "tv_coco_voc", "lraspp_mobilenet_v3_large-d234d4ea.pth",
    "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
    params=3_221_538, mib=12.49, metrics={"miou": 57.9, "pixel_acc": 91.2}, pre=_SEG,
    layout="torchvision.models.segmentation (lraspp_mobilenet_v3_large)", data=_COCO_VOC, default=True)

# torchvision.models.video.resnet
_tv("mc3_18", "tv_k400", "mc3_18-a90a0ba3.pth", "MC3_18_Weights.KINETICS400_V1",
    params=11_695_440, mib=44.672, metrics=_acc(63.96, 84.13), pre=_VIDEO,
    layout="torchvision.models.video.resnet (r3d_18, mc3_18)", data=_K400, default=True)
_tv("r2plus1d_18", "tv_k400", "r2plus1d_18-91a641e6.pth", "R2Plus1D_18_Weights.KINETICS400_V1",
    params=31_505_325, mib=120.318, metrics=_acc(67.463, 86.175), pre=_VIDEO,
    layout="torchvision.models.video.resnet (r2plus1d_18)", data=_K400, default=True)
_tv("r3d_18", "tv_k400", "r3d_18-b3b3357e.pth", "R3D_18_Weights.KINETICS400_V1",
    params=33_371_472, mib=127.359, metrics=_acc(63.2, 83.479), pre=_VIDEO,
    layout="torchvision.models.video.resnet (r3d_18, mc3_18)", data=_K400, default=True)

# torchvision.models.detection.faster_rcnn
_tv("fasterrcnn_resnet50_fpn", "tv_coco", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
    params=41_755_286, mib=159.743, metrics={"box_map": 37.0}, pre=_DET,
    layout="torchvision.models.detection (fasterrcnn_resnet50_fpn)", data=_COCO, default=True)

# torchvision.models.detection.fcos
_tv("fcos_resnet50_fpn", "tv_coco", "fcos_resnet50_fpn_coco-99b0c9b7.pth", "FCOS_ResNet50_FPN_Weights.COCO_V1",
    params=32_269_600, mib=123.608, metrics={"box_map": 39.2}, pre=_DET,
    layout="torchvision.models.detection (fcos_resnet50_fpn)", data=_COCO, default=True)

# torchvision.models.detection.retinanet
_tv("retinanet_resnet50_fpn", "tv_coco", "retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "RetinaNet_ResNet50_FPN_Weights.COCO_V1",
    params=34_014_999, mib=130.267, metrics={"box_map": 36.4}, pre=_DET,
    layout="torchvision.models.detection (retinanet_resnet50_fpn)", data=_COCO, default=True)

# torchvision.models.detection.ssd
_tv("ssd300_vgg16", "tv_coco", "ssd300_vgg16_coco-b556d3b4.pth", "SSD300_VGG16_Weights.COCO_V1",
    params=35_641_826, mib=135.988, metrics={"box_map": 25.1}, pre=_DET,
    layout="torchvision.models.detection (ssd300_vgg16)", data=_COCO, default=True)

# torchvision.models.detection.ssdlite
_tv("ssdlite320_mobilenet_v3_large", "tv_coco", "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
    "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
    params=3_440_060, mib=13.418, metrics={"box_map": 21.3}, pre=_DET,
    layout="torchvision.models.detection (ssdlite320_mobilenet_v3_large)", data=_COCO, default=True)

# timm 1.0.31: pretrained_cfgs; accuracy from results/results-imagenet.csv. resnet18/50 and convnext_* also have
# torchvision rows (the defaults); the rest have no torchvision weights.
_timm("resnet18", "resnet18.a1_in1k",
    params=11_689_512, metrics=_acc(73.158, 91.026), eval_at=(288, 1.0), pre=_cls(235, 224, "bicubic"),
    layout="timm.models.resnet")
_timm("resnet50", "resnet50.a1_in1k",
    params=25_557_032, metrics=_acc(81.214, 95.102), eval_at=(288, 1.0), pre=_cls(235, 224, "bicubic"),
    layout="timm.models.resnet")
_timm("seresnet50", "seresnet50.ra2_in1k",
    params=28_088_024, metrics=_acc(81.284, 95.652), eval_at=(288, 0.95), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.resnet", default=True)
_timm("seresnext50_32x4d", "seresnext50_32x4d.racm_in1k",
    params=27_559_896, metrics=_acc(82.196, 96.148), eval_at=(288, 0.95), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.resnet", default=True)
_timm("preact_resnet18", "resnetv2_18.ra4_e3600_r224_in1k",
    params=11_687_720, pre=_cls(248, 224, "bicubic", stats=_HALF), layout="timm.models.resnetv2", default=True)
_timm("preact_resnet34", "resnetv2_34.ra4_e3600_r224_in1k",
    params=21_795_880, pre=_cls(248, 224, "bicubic", stats=_HALF), layout="timm.models.resnetv2", default=True)
_timm("preact_resnet50", "resnetv2_50.a1h_in1k",
    params=25_549_352, metrics=_acc(81.398, 95.726), eval_at=(288, 1.0),
    pre=_cls(235, 224, "bicubic", stats=_HALF), layout="timm.models.resnetv2", default=True)
_timm("preact_resnet101", "resnetv2_101.a1h_in1k",
    params=44_541_480, metrics=_acc(83.002, 96.454), eval_at=(288, 1.0),
    pre=_cls(235, 224, "bicubic", stats=_HALF), layout="timm.models.resnetv2", default=True)
_timm("inception_v4", "inception_v4.tf_in1k",
    params=42_679_816, metrics=_acc(80.156, 94.968), eval_at=(299, 0.875),
    pre=_cls(341, 299, "bicubic", stats=_HALF), layout="timm.models.inception_v4", default=True)
_timm("inception_resnet_v2", "inception_resnet_v2.tf_in1k",
    params=55_843_464, metrics=_acc(80.462, 95.308), eval_at=(299, 0.897),
    pre=_cls(333, 299, "bicubic", stats=_HALF), layout="timm.models.inception_resnet_v2", default=True)
_timm("xception", "legacy_xception.tf_in1k",
    params=22_855_952, metrics=_acc(79.04, 94.382), eval_at=(299, 0.897),
    pre=_cls(333, 299, "bicubic", stats=_HALF), layout="timm.models.xception.legacy_xception",
    url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/xception-43020ad28.pth",
    default=True)
_timm("mobilenet_v1", "mobilenetv1_100.ra4_e3600_r224_in1k",
    params=4_231_976, pre=_cls(256, 224, "bicubic", stats=_HALF),
    layout="timm.models.efficientnet (mobilenetv1_100)", default=True)
_timm("convnext_tiny", "convnext_tiny.fb_in1k",
    params=28_589_128, metrics=_acc(82.698, 96.144), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext")
_timm("convnext_small", "convnext_small.fb_in1k",
    params=50_223_688, metrics=_acc(83.7, 96.808), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext")
_timm("convnext_base", "convnext_base.fb_in1k",
    params=88_591_464, metrics=_acc(84.428, 96.968), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext")
_timm("convnext_large", "convnext_large.fb_in1k",
    params=197_767_336, metrics=_acc(84.846, 97.214), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext")
_timm("convnext_xlarge", "convnext_xlarge.fb_in22k_ft_in1k",
    params=350_196_968, metrics=_acc(87.33, 98.328), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", default=True)
_timm("convnextv2_atto", "convnextv2_atto.fcmae_ft_in1k",
    params=3_708_400, metrics=_acc(77.76, 93.726), eval_at=(288, 0.95), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_femto", "convnextv2_femto.fcmae_ft_in1k",
    params=5_233_240, metrics=_acc(79.338, 94.56), eval_at=(288, 0.95), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_pico", "convnextv2_pico.fcmae_ft_in1k",
    params=9_066_280, metrics=_acc(81.086, 95.48), eval_at=(288, 0.95), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_nano", "convnextv2_nano.fcmae_ft_in1k",
    params=15_623_800, metrics=_acc(82.486, 96.226), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_tiny", "convnextv2_tiny.fcmae_ft_in1k",
    params=28_635_496, metrics=_acc(83.464, 96.718), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_base", "convnextv2_base.fcmae_ft_in1k",
    params=88_717_800, metrics=_acc(85.474, 97.384), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_large", "convnextv2_large.fcmae_ft_in1k",
    params=197_956_840, metrics=_acc(86.118, 97.822), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("convnextv2_huge", "convnextv2_huge.fcmae_ft_in1k",
    params=660_289_640, metrics=_acc(86.58, 97.972), eval_at=(288, 1.0), pre=_cls(256, 224, "bicubic"),
    layout="timm.models.convnext", license="cc-by-nc-4.0", default=True)
_timm("vit_s_16", "vit_small_patch16_224.augreg_in21k_ft_in1k",
    params=22_050_664, metrics=_acc(81.384, 96.136), eval_at=(224, 0.9),
    pre=_cls(248, 224, "bicubic", stats=_HALF), layout="timm.models.vision_transformer", default=True)
_timm("vit_b_16", "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    params=86_567_656, metrics=_acc(85.096, 97.53), eval_at=(224, 0.9), pre=_cls(248, 224, "bicubic", stats=_HALF),
    layout="timm.models.vision_transformer")
_timm("vit_l_16", "vit_large_patch16_224.augreg_in21k_ft_in1k",
    params=304_326_632, metrics=_acc(85.834, 97.818), eval_at=(224, 0.9),
    pre=_cls(248, 224, "bicubic", stats=_HALF), layout="timm.models.vision_transformer")

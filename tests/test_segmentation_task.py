"""The segmentation task end to end: the Trainer on tiny data, eval and predict through the CLI
(mask PNG and overlay; NIfTI and montage for volumes), the metric against the confusion matrix
and across simulated ranks, joint augmentation that keeps image and mask aligned in 2-D and 3-D,
padding that crops back exactly, sliding windows, losses and their options, CAM and ONNX export."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.cli import main
from convnet.data import DataSplits, Preprocess
from convnet.data.augment import AugmentConfig
from convnet.models import create_model
from convnet.tasks import get_task
from convnet.tasks.segmentation import SegmentationMetrics, fit_target
from convnet.tasks.segmentation_augment import JointAugment
from convnet.tasks.segmentation_metrics import confusion_matrix, scores_from_confusion
from convnet.tasks.sliding_window import pad_for_model
from convnet.train import TrainConfig, Trainer, parse_overrides

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_model  # noqa: E402

HAS_NIBABEL = importlib.util.find_spec("nibabel") is not None
TINY_UNET = "model.overrides.widths=[4,8,16]"


def synthetic_splits(n=12, size=(48, 48), dims=2, classes=("background", "blob"), seed=0):
    """Bright blobs (class 1) on noise, masks exact: a set the tiny models learn in a few steps."""
    g = torch.Generator().manual_seed(seed)
    shape = (n,) + tuple(size[:dims])
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size[:dims]], indexing="ij")
    masks = torch.zeros(shape, dtype=torch.long)
    for i in range(n):
        centre = [float(torch.randint(8, s - 8, (1,), generator=g)) for s in size[:dims]]
        dist = sum((gr - c) ** 2 for gr, c in zip(grids, centre))
        masks[i] = (dist < 36).long()
    x = (masks.float() * 1.5 + 0.3 * torch.randn(shape, generator=g)).unsqueeze(1)
    pre = Preprocess(channels=1, source_size=tuple(size[:dims]), size=tuple(size[:dims]), mean=(0.5,), std=(0.25,))
    split = (x, masks)
    seg = {"kind": "image" if dims == 2 else "volume", "scale": "native"}
    return DataSplits("blobs", split, (x[:4], masks[:4]), (x[4:8], masks[4:8]), list(classes), pre,
                      {"n_train": n, "n_val": 4, "n_test": 4, "segmentation": seg})


def cfg_for(out, *overrides):
    return parse_overrides(TrainConfig(), [f"out={out}", "report=false", "device=cpu", "data.batch_size=4",
                                           "epochs=1", "max_steps=2", "threads=2", *overrides])


# ----------------------------------------------------------------------------- end to end
def test_train_eval_predict_2d_through_the_cli(tmp_path, capsys):
    """`convnet train --task segment --model unet` on the horse crops, then eval (per-class IoU in
    its JSON), predict (mask PNG of the file's size, overlay) and the run report's figures."""
    pytest.importorskip("skimage")
    run = tmp_path / "run"
    assert main(["train", "--task", "segment", "--model", "unet", "--data", "horse", "--out", str(run),
                 "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--no-progress", TINY_UNET,
                 "data.image_size=48", "threads=2"]) == 0
    assert "test mIoU" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segment" and 0 <= summary["test_miou"] <= 1
    assert summary["test_per_class"]["classes"] == ["background", "horse"]
    assert len(summary["test_per_class"]["iou"]) == 2
    assert (run / "report" / "segmentation_examples.png").is_file() and (run / "report" / "per_class_iou.png").is_file()

    assert main(["eval", "--run", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["test_iou_per_class"]) == {"background", "horse"}
    assert result["test_miou"] == pytest.approx(summary["test_miou"])
    assert "val_loss" in result and "test_pixel_accuracy" in result

    photo = np.array(Image.open(Path(__import__("skimage").__file__).parent / "data" / "coins.png"))[:70, :90]
    Image.fromarray(photo).save(tmp_path / "coins_crop.png")
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), str(tmp_path / "coins_crop.png"), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "background" in line and "%" in line
    mask = Image.open(out / "coins_crop_mask.png")
    assert mask.mode == "P" and mask.size == (90, 70)  # every input pixel has a label (mirror padding)
    assert set(np.unique(np.array(mask)).tolist()) <= {0, 1}
    overlay = Image.open(out / "coins_crop_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (90, 70)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NIBABEL, reason="nibabel (optional extra 'medical') is not installed")
def test_3d_run_predicts_a_nifti_mask_with_the_input_affine(tmp_path, capsys):
    from convnet.data.segmentation_data import read_volume, write_nifti

    vol = tmp_path / "vol"
    (vol / "images").mkdir(parents=True)
    (vol / "labels").mkdir()
    g = np.random.default_rng(0)
    for i in range(6):
        labels = np.zeros((16, 16, 16), dtype=np.uint8)
        labels[4:12, 3 + i % 4:11 + i % 4, 4:12] = 1
        write_nifti(vol / "images" / f"c{i}.nii.gz", (labels * 50 + g.normal(10, 3, labels.shape)).astype(np.float32))
        write_nifti(vol / "labels" / f"c{i}.nii.gz", labels)
    run = tmp_path / "run3d"
    trainer = Trainer(cfg_for(run, f"data.name=nifti:{vol}", "model.name=unet3d", "model.spatial_dims=3",
                              "model.overrides.widths=[4,8,16]", "model.overrides.padding=same",
                              "data.val_fraction=0.2", "data.test_fraction=0.2", "data.batch_size=2"), progress=False)
    summary = trainer.fit()
    assert summary["task"] == "segment" and summary["steps"] == 2
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = (3, -4, 5)
    scan = (g.normal(10, 3, (18, 20, 14))).astype(np.float32)  # not a multiple of the divisor 4
    write_nifti(tmp_path / "scan.nii.gz", scan, affine)
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), str(tmp_path / "scan.nii.gz"), "--out", str(out)]) == 0
    mask, mask_affine, _ = read_volume(out / "scan_mask.nii.gz")
    assert mask.shape == (18, 20, 14) and np.allclose(mask_affine, affine)
    assert (out / "scan_montage.png").is_file()


def test_segment_task_refuses_classification_data(tmp_path):
    with pytest.raises(ValueError, match="not masks"):
        Trainer(cfg_for(tmp_path / "r", "model.name=unet", "task.name=segment", TINY_UNET), progress=False).fit()


# ----------------------------------------------------------------------------- metric
def _metric_over(batches, classes=("a", "b", "c"), ignore=255):
    m = SegmentationMetrics(list(classes), ignore)
    for logits, target in batches:
        m.update(logits, {"target": target, "input": torch.zeros(len(target), 1, *target.shape[1:])})
    return m


def test_metric_equals_scores_from_the_collected_confusion_matrix():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 3, 5, 6, generator=g), torch.randint(0, 3, (2, 5, 6), generator=g)) for _ in range(3)]
    batches[1][1][0, :2] = 255  # ignored positions
    m = _metric_over(batches)
    preds = torch.cat([b[0].argmax(1) for b in batches])
    targets = torch.cat([b[1] for b in batches])
    cm = confusion_matrix(preds, targets, 3, 255)
    assert torch.equal(m.confusion, cm)
    expected = scores_from_confusion(cm)
    result = m.result()
    assert result["miou"] == pytest.approx(expected["miou"])
    assert result["mean_dice"] == pytest.approx(expected["mean_dice"])
    assert result["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert list(result["iou_per_class"].values()) == pytest.approx(expected["iou"].tolist())
    assert int(cm.sum()) == targets.numel() - 12  # 2 rows of 6 ignored


def test_metric_reduces_across_ranks(monkeypatch):
    """Two ranks each see half of the split; after sync every rank holds the whole split's
    figures (the all-reduce simulated by adding the other rank's states)."""
    import torch.distributed as dist

    import convnet.tasks.metric as metric_module

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(2, 3, 4, 4, generator=g), torch.randint(0, 3, (2, 4, 4), generator=g)) for _ in range(4)]
    whole = _metric_over(batches).result()
    rank0, rank1 = _metric_over(batches[:2]), _metric_over(batches[2:])
    other = {name: getattr(rank1, name).clone() for name in ("correct", "labelled", "confusion", "seen", "loss_sum")}
    sums = iter([other[name] for name, r in rank0._reductions.items() if r == "sum"])

    def all_reduce(tensor, op=None):
        tensor += next(sums)

    monkeypatch.setattr(metric_module, "distributed", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_gather_object", lambda out, value: out.__setitem__(slice(None), [value, []]))
    merged = rank0.result()
    assert merged["miou"] == pytest.approx(whole["miou"]) and merged["pixel_accuracy"] == whole["pixel_accuracy"]
    assert merged["iou_per_class"] == whole["iou_per_class"]


def test_training_metric_is_cheap_and_counts_labelled_pixels():
    task = get_task("segment").setup(["a", "b"])
    m = task.metrics(training=True)
    logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2): predicts 0 then 1
    m.update({"out": logits, "aux": logits}, {"target": torch.tensor([[[0, 255]]])})
    assert m.progress() == {"pixel_acc": 1.0} and set(m.state_dict()) == {"correct", "labelled"}


# ----------------------------------------------------------------------------- augmentation
GEOMETRY = dict(shift=6.0, scale=0.2, shear=0.2, rotate=30.0, hflip=0.5, vflip=0.5, color_jitter=0.0)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("crop", ["resized_crop", "crop_padding", "none"])
def test_geometry_moves_image_and_mask_together(dims, crop):
    """An image equal to its mask stays equal to it wherever the mask has a label, after every
    geometric op (image sampled with the mask's nearest-neighbour rule to compare them)."""
    extra = {"resized_crop": {"resized_crop": 0.3}, "crop_padding": {"crop_padding": 5}, "none": {}}[crop]
    geometry = {**GEOMETRY, "vflip": 0.5 if dims > 1 else 0.0, **extra}
    cfg = AugmentConfig(**geometry)
    aug = JointAugment(cfg, dims, mean=(0.0,), std=(1.0,), ignore_index=255, interpolation="nearest")
    size = {1: (40,), 2: (24, 28), 3: (12, 14, 10)}[dims]
    g = torch.Generator().manual_seed(dims)
    mask = torch.randint(0, 4, (6,) + size, generator=g)
    x = mask.float().unsqueeze(1)
    batch = aug({"input": x, "target": mask, "index": torch.arange(6)}, torch.Generator().manual_seed(0))
    xa, ma = batch["input"], batch["target"]
    labelled = ma != 255
    assert xa.shape == x.shape and ma.shape == mask.shape and ma.dtype == torch.long
    assert torch.equal(xa[:, 0][labelled], ma[labelled].float())
    assert labelled.float().mean() > 0.1 and not torch.equal(ma, mask)  # moved, and still partly labelled
    assert set(torch.unique(ma).tolist()) <= {0, 1, 2, 3, 255}


def test_bilinear_image_with_nearest_mask_and_colour_on_the_image_only():
    cfg = AugmentConfig(shift=3.0, scale=0.1, shear=0.0, rotate=10.0, color_jitter=0.4)
    aug = JointAugment(cfg, 2, mean=(0.5,), std=(0.25,))
    mask = torch.zeros(4, 32, 32, dtype=torch.long)
    mask[:, 8:24, 8:24] = 2
    out = aug({"input": torch.randn(4, 1, 32, 32), "target": mask}, torch.Generator().manual_seed(0))
    assert set(torch.unique(out["target"]).tolist()) <= {0, 2, 255}  # no blended labels
    same = JointAugment(AugmentConfig(shift=0, scale=0, shear=0, color_jitter=0.4), 2, mean=(0.5,), std=(0.25,))
    x = torch.randn(2, 1, 8, 8)
    kept = same({"input": x, "target": mask[:2, :8, :8]}, torch.Generator().manual_seed(0))
    assert torch.equal(kept["target"], mask[:2, :8, :8]) and not torch.equal(kept["input"], x)


def test_mixing_and_policies_are_refused_for_segmentation():
    for key, value in (("mixup", 0.2), ("cutmix", 1.0), ("auto_augment", "imagenet"), ("trivial_augment", True)):
        with pytest.raises(ValueError, match=f"augment.{key}"):
            JointAugment(AugmentConfig(**{key: value}), 2, mean=(0.5,), std=(0.25,))


# ----------------------------------------------------------------------------- sizes, padding, windows
def test_invalid_sizes_are_refused_naming_divisor_and_nearest_sizes():
    task = get_task("segment")
    data = synthetic_splits(size=(50, 50))
    model_cfg = TrainConfig().model
    model_cfg.name, model_cfg.overrides = "unet", {"encoder": "resnet18", "encoder_overrides": {"widths": (8, 8, 8, 8)}}
    with pytest.raises(ValueError, match=r"multiples of 32.*nearest valid extents: 32 or 64.*pad_to_multiple"):
        task.setup(data.classes).build_model(model_cfg, data)
    padded = get_task("segment", {"pad_to_multiple": True}).setup(data.classes)
    model = padded.build_model(model_cfg, data).eval()
    out = padded.forward(model, {"input": data.train[0][:2]})
    assert out.shape == (2, 2, 50, 50)


def test_pad_to_multiple_crops_back_exactly():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 37, 45)
    for model in (tiny_model("unet", in_channels=1, num_classes=3).eval(),  # valid convolutions: mirrored margins
                  create_model("unet", in_channels=1, num_classes=3, encoder="resnet18",
                               encoder_overrides={"widths": (8, 8, 8, 8)}).eval()):
        task = get_task("segment", {"pad_to_multiple": True}).setup(["a", "b", "c"])
        out = task.forward(model, {"input": x})
        padded, crop = pad_for_model(model, x, mode="reflect")
        assert out.shape == (2, 3, 37, 45)
        torch.testing.assert_close(out, model(padded)[crop], rtol=0, atol=0)


def test_valid_unet_trains_on_the_centre_of_its_tile():
    target = torch.arange(100).view(1, 10, 10)
    assert torch.equal(fit_target(torch.zeros(1, 2, 4, 4), target), target[:, 3:7, 3:7])
    with pytest.raises(ValueError, match="does not fit"):
        fit_target(torch.zeros(1, 2, 12, 4), target)


def test_sliding_window_predict_bounds_the_windows_and_covers_the_input():
    model = tiny_model("unet", in_channels=1, num_classes=2).eval()  # valid convolutions: 68 -> 28
    task = get_task("segment", {"window": 68, "window_batch": 3}).setup(["a", "b"])
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    sample = {"input": torch.randn(1, 70, 100), "path": "big.png", "index": 0, "cover": True}
    batch = task.collate([sample])
    with torch.no_grad():
        out = task.forward(model, batch)
    assert out.shape == (1, 2, 70, 100)  # the mirrored margin makes the windows cover the input
    assert seen and all(s[0] <= 3 and s[2:] == (68, 68) for s in seen)  # never more than window_batch windows
    pred = task.postprocess(out, batch)[0]
    assert pred["mask"].shape == (70, 100) and sum(pred["fractions"].values()) == pytest.approx(1.0)
    # Without the margin (evaluation of tiles): the valid-convolution output is the input's centre.
    plain = get_task("segment", {"window": 68}).setup(["a", "b"])
    with torch.no_grad():
        centre = plain.forward(model, {"input": torch.randn(1, 1, 70, 100)})
    assert centre.shape == (1, 2, 30, 60)


@pytest.mark.slow
def test_sliding_window_evaluation_of_larger_test_inputs(tmp_path):
    """Training on 48-pixel crops, testing on 96-pixel images with windows of 88 (the valid
    convolutions' margin mirrored, so every test pixel is scored)."""
    data = synthetic_splits(n=8, size=(48, 48))
    big = synthetic_splits(n=8, size=(96, 96), seed=1)
    data.test = big.test
    summary = Trainer(cfg_for(tmp_path / "w", "model.name=unet", TINY_UNET, "task.options.window=88",
                              "task.options.pad_to_multiple=true"), progress=False, data=data).fit()
    assert 0 <= summary["test_miou"] <= 1 and summary["steps"] == 2


# ----------------------------------------------------------------------------- losses
def test_losses_aux_weight_and_options():
    g = torch.Generator().manual_seed(0)
    out, aux = torch.randn(2, 3, 6, 6, generator=g), torch.randn(2, 3, 6, 6, generator=g)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    target[0, 0] = 255
    task = get_task("segment").setup(["a", "b", "c"])
    main_loss, _ = task.loss(out, {"target": target})
    aux_loss, _ = task.loss(aux, {"target": target})
    total, parts = task.loss({"out": out, "aux": aux}, {"target": target})
    assert float(total) == pytest.approx(float(main_loss) + 0.5 * float(aux_loss), rel=1e-6)  # torchvision's 0.5
    assert parts["out"] == pytest.approx(float(main_loss)) and parts["aux"] == pytest.approx(float(aux_loss))
    expected = torch.nn.functional.cross_entropy(out, target, ignore_index=255)
    assert float(main_loss) == pytest.approx(float(expected), rel=1e-6)
    dice_ce = get_task("segment", {"loss": "dice_ce"}).setup(["a", "b", "c"])
    total, parts = dice_ce.loss(out, {"target": target})
    assert set(parts) == {"dice", "ce"} and float(total) == pytest.approx(parts["dice"] + parts["ce"], rel=1e-5)
    weighted = get_task("segment", {"class_weights": [1.0, 2.0, 0.5]}).setup(["a", "b", "c"])
    expected = torch.nn.functional.cross_entropy(out, target, weight=torch.tensor([1.0, 2.0, 0.5]), ignore_index=255)
    assert float(weighted.loss(out, {"target": target})[0]) == pytest.approx(float(expected), rel=1e-6)
    focal = get_task("segment", {"loss": "focal", "focal_gamma": 0.0}).setup(["a", "b", "c"])
    assert float(focal.loss(out, {"target": target})[0]) == pytest.approx(float(main_loss), rel=1e-5)  # gamma 0: CE
    with pytest.raises(ValueError, match="one weight per class"):
        get_task("segment", {"class_weights": [1.0]}).setup(["a", "b"])
    with pytest.raises(ValueError, match="unknown segmentation loss 'iou'"):
        get_task("segment", {"loss": "iou"})
    with pytest.raises(ValueError, match=r"no option\(s\) \[.window_size.\]"):
        get_task("segment", {"window_size": 3})


# ----------------------------------------------------------------------------- analysis and export
def test_cam_of_a_segmentation_model_sums_the_class_logits():
    from convnet.analysis.cam import grad_cam

    model = tiny_model("unet", in_channels=1, num_classes=3).eval()
    x = torch.randn(1, 1, 48, 48)
    result = grad_cam(model, x, target=2)
    logits = model(x)
    assert result.cam.shape == (1, 48, 48) and float(result.cam.max()) <= 1.0
    torch.testing.assert_close(result.logits, logits.flatten(2).mean(2))
    # The channel weights are the gradients of the summed class-2 logits, averaged over positions.
    acts = {}
    handle = model.get_submodule(result.layer).register_forward_hook(lambda m, a, o: acts.setdefault("a", o))
    xg = x.clone().requires_grad_(True)
    score = model(xg)[:, 2].sum()
    handle.remove()
    (grads,) = torch.autograd.grad(score, acts["a"])
    torch.testing.assert_close(result.weights, grads.flatten(2).mean(2))


def test_summary_of_a_segmentation_model():
    from convnet.analysis import summary

    model = tiny_model("unet", in_channels=1, num_classes=2)
    report = summary(model, (1, 48, 48))
    assert "classifier" in report.table()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
                                  "lraspp_mobilenet_v3_large"])
def test_onnx_export_with_dynamic_batch_height_width(name, tmp_path):
    """torchvision's layouts exported once at 64x64, run by ONNX Runtime at two other sizes and
    batch sizes (about 30-45 s each on 2 cores; the encoder U-Net's test is in
    test_segmentation_models.py)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from convnet.deploy.export import export_onnx, verify_onnx

    model = tiny_model(name, in_channels=3, num_classes=4).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", torch.randn(2, 3, 64, 64))
    report = verify_onnx(path, model, [torch.randn(1, 3, 72, 96), torch.randn(3, 3, 96, 80)])
    assert [c["shape"] for c in report["cases"]] == [[1, 3, 72, 96], [3, 3, 96, 80]]
    assert report["max_rel_err"] < 1e-4, report


def test_predict_on_a_resized_run_brings_the_mask_back_to_the_file_size(tmp_path):
    """A run on images resized to 32x32 predicts at 32x32 and returns the mask at the file's size."""
    pre = Preprocess(channels=3, source_size=(32, 32), size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    run = {"data": {"preprocess": pre.to_dict(), "segmentation": {"kind": "image", "scale": "resize"}}}
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    task = get_task("segment").setup(["a", "b"])
    sample = task.load_input(str(tmp_path / "a.jpg"), run)
    assert sample["input"].shape == (3, 32, 32) and sample["image"].shape == (3, 50, 70)
    model = create_model("unet", in_channels=3, num_classes=2, widths=(4, 8), padding="same").eval()
    batch = task.collate([sample])
    with torch.no_grad():
        pred = task.postprocess(task.forward(model, batch), batch)[0]
    assert pred["mask"].shape == (50, 70)
    written = task.write_prediction(pred, sample, tmp_path / "out", run)
    assert [p.name for p in written] == ["a_mask.png", "a_overlay.png"]
    with pytest.raises(ValueError, match="not volumes"):
        np.save(tmp_path / "v.npy", np.zeros((4, 4, 4)))
        task.load_input(str(tmp_path / "v.npy"), run)

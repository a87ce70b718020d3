"""What the Trainer asks of every task, checked on the tasks that exist: the registry, progressive
resizing of a batch, the data's rank, and refusals that name the task's data."""
import pytest
import torch

from convnet.data.datasets import DataSplits, select_classes
from convnet.data.transforms import Preprocess
from convnet.tasks import TASKS, Task, get_task, list_tasks
from convnet.tasks.base import data_dims


def test_every_task_is_registered_and_unknown_names_are_listed():
    names = list_tasks()
    assert {"classify", "segment", "detect"} <= set(names)
    for name in names:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and task.primary_metric
    with pytest.raises(ValueError, match=r"unknown task 'segmnet'; did you mean segment.*; tasks: classify, "):
        get_task("segmnet")
    with pytest.raises(ValueError, match=r"task 'classify' has no option\(s\) \['nope'\]; its options: "):
        get_task("classify", {"nope": 1})
    assert set(TASKS) == set(names)


def test_progressive_resizing_resizes_masks_by_nearest_neighbour():
    x = torch.rand(2, 3, 16, 16)
    mask = torch.randint(0, 4, (2, 16, 16))
    small = get_task("segment").resize_batch({"input": x, "target": mask}, (8, 8))
    assert small["input"].shape == (2, 3, 8, 8) and small["target"].shape == (2, 8, 8)
    assert small["target"].dtype == mask.dtype and set(small["target"].unique().tolist()) <= set(mask.unique().tolist())
    torch.testing.assert_close(small["target"], mask[:, ::2, ::2])  # nearest: every other pixel
    labels = torch.tensor([1, 2])
    resized = get_task("classify").resize_batch({"input": x, "target": labels}, (8, 8))
    assert resized["input"].shape == (2, 3, 8, 8) and resized["target"] is labels
    same = {"input": x, "target": labels}
    assert get_task("classify").resize_batch(same, (16, 16)) is same


def test_data_rank_decides_the_default_dimensionality():
    def data(size):
        return DataSplits("x", (torch.zeros(1), torch.zeros(1)), (torch.zeros(1), torch.zeros(1)),
                          (torch.zeros(1), torch.zeros(1)), ["a"], Preprocess(1, size, size))

    assert data_dims(2, data((150,))) == 1 and data_dims(2, data((16, 112, 112))) == 3
    assert data_dims(2, data((32, 32))) == 2 and data_dims(3, data((32, 32))) == 3  # an explicit choice stays


def test_selecting_classes_of_mask_targets_is_refused():
    masks = (torch.zeros(4, 1, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))
    data = DataSplits("masks", masks, masks, masks, ["bg", "fg"], Preprocess(1, (8, 8), (8, 8)))
    with pytest.raises(ValueError, match="masks has targets that are not one class per sample|not one class per sample"):
        select_classes(data, "1")


def test_analysis_input_lets_a_valid_convolution_unet_take_any_file_size():
    from convnet import create_model
    from convnet.analysis.cam import grad_cam
    from convnet.models import get_entry

    model = create_model("unet", num_classes=3, **get_entry("unet").extra["tiny"]).eval()
    x = torch.randn(1, 1, 37, 45)  # sizes the valid-convolution U-Net cannot take as they are
    padded, crop = get_task("segment").analysis_input(model, x)
    assert padded.shape[2:] != x.shape[2:]
    result = grad_cam(model, padded, target=1)
    assert result.cam[crop].shape == (1, 37, 45)
    assert get_task("classify").analysis_input(model, x) == (x, None)


def test_segmentation_answers_serve_with_a_png_mask():
    import base64
    import io

    import numpy as np
    from PIL import Image

    mask = torch.zeros(6, 8, dtype=torch.uint8)
    mask[2:4, 3:7] = 2
    task = get_task("segment").setup(["bg", "a", "b"])
    answer = task.to_response({"mask": mask, "fractions": {"bg": 0.83}}, {"data": {"classes": ["bg", "a", "b"]}})
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"]["png"]))))
    assert png.shape == (6, 8) and np.array_equal(png, mask.numpy())
    assert answer["mask"]["classes"] == ["bg", "a", "b"] and answer["fractions"] == {"bg": 0.83}
    volume = task.to_response({"mask": torch.ones(4, 5, 6, dtype=torch.uint8)}, {"data": {"classes": ["bg", "a"]}})
    assert volume["mask"]["shape"] == [4, 5, 6] and volume["mask"]["slice"] == {"axis": 0, "index": 2}

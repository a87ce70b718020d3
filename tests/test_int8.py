"""Compiled int8 inference (convnet.deploy.int8): the engines against fp32 on a trained model,
calibration from the training split only, the engines' int8 GEMM ceilings, and choice by name.

Tolerances, for a small LeNet-5 trained briefly on the digits and calibrated on 512 training
images: activations are quantised per tensor to 256 levels (a step is 1/255 of the observed
range) and weights per channel to 255; each of the five integer layers adds at most half a step
of rounding per input and product, which sum like independent errors, so the logits move by
1-3% of their scale. The check is the worst of the 360 test digits, and a test digit whose
activations leave the calibrated range is clipped there (ONNX Runtime calibrated on 128 images:
12% on one digit, 2.6% on 1,000): 8% leaves room for that and for the engines' different
rounding (symmetric or asymmetric activations, bias correction), and fails on a wrong scale or
a layer run with another's range. 97% top-1 agreement allows 10 of the 360 digits to flip where
a briefly trained model's margins are thin (a fully trained one may flip at most 1: see the
slow accuracy test).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model
from torch import nn

from convnet import create_model
from convnet.data.datasets import DataSplits, load_digits
from convnet.deploy import optimize
from convnet.deploy.bench import bench_model, matmul_ceiling
from convnet.deploy.int8 import (DEFAULT_INT8_BACKEND, INT8_BACKENDS, Int8Model, MissingInt8Backend,
                                 calibration_batches, float_module_names, int8_backends, int8_ceiling, quantize)

REL_TOL = 0.08
AGREEMENT = 0.97


def _needs(backend: str) -> None:
    engine = INT8_BACKENDS[backend]
    if not engine.available():
        pytest.skip(f"int8 backend {backend!r} needs {', '.join(engine.packages)} "
                    f"(pip install 'convnet[{engine.extra}]')")


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_digits()


@pytest.fixture(scope="module")
def trained_lenet(digits) -> nn.Module:
    """LeNet-5 (modern: ReLU, max pooling, linear output) after 60 Adam steps of 128 digits."""
    x_train, y_train = digits.train
    torch.manual_seed(0)
    model = create_model("lenet5_modern")
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny kernels: a second (spinning) thread only slows a loaded machine
    try:
        for _ in range(60):
            idx = torch.randint(0, len(x_train), (128,), generator=g)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _compare(model: nn.Module, q: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    with torch.inference_mode():
        ref, got = model(x), q(x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    rel = ((got - ref).abs().max() / ref.abs().max()).item()
    return rel, (got.argmax(1) == ref.argmax(1)).float().mean().item()


@pytest.mark.parametrize("backend", [
    "onnxruntime", "openvino",
    pytest.param("inductor", marks=pytest.mark.slow),  # inductor's compilation: a minute on 2 cores
    pytest.param("fx", marks=pytest.mark.slow),
])
def test_int8_close_to_fp32_on_a_trained_model(trained_lenet, digits, backend: str) -> None:
    _needs(backend)
    x_test, y_test = digits.test
    with torch.inference_mode():
        fp32_acc = (trained_lenet(x_test).argmax(1) == y_test).float().mean().item()
    assert fp32_acc > 0.8, "the float model did not learn; the comparison would mean nothing"
    calibration = calibration_batches(digits, images=512, batch_size=128)
    q = optimize(trained_lenet, dtype="int8", calibration=calibration, backend=backend, threads=1)
    assert isinstance(q, Int8Model) and q.backend == backend
    assert q.calibration_batches == 4 and q.calibration_images == 512
    rel, agreement = _compare(trained_lenet, q, x_test)
    assert rel <= REL_TOL, f"{backend}: logits differ by {rel:.3f} of their scale"
    assert agreement >= AGREEMENT, f"{backend}: top-1 agreement {agreement:.3f}"
    # Any batch size: the engines' graphs have a dynamic batch axis (or recompile per shape).
    rel1, _ = _compare(trained_lenet, q, x_test[:1])
    assert rel1 <= REL_TOL
    # The result is really quantised: an int8 engine that silently ran fp32 would agree to ~1e-6.
    assert rel > 1e-4
    assert trained_lenet.features.c1.weight.dtype == torch.float32  # the float model is untouched


def test_lenet5_rbf_output_stays_float(trained_lenet) -> None:
    """LeNet-5's RBF output layer (||x||^2 - 2 x.w + ||w||^2, a difference of large terms) is
    kept in float by every engine; a name the model does not have is refused, named."""
    paper = create_model("lenet5")
    assert float_module_names(paper) == ["head.output"]
    assert float_module_names(paper, ["head.f6"]) == ["head.f6", "head.output"]
    assert float_module_names(trained_lenet) == []  # the modern variant's output is a Linear
    with pytest.raises(ValueError, match="head.f7.*did you mean head.f6"):
        float_module_names(paper, ["head.f7"])


def test_onnxruntime_leaves_the_rbf_nodes_unquantised() -> None:
    _needs("onnxruntime")
    import onnx

    paper = create_model("lenet5").eval()
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    q = quantize(paper, [x], backend="onnxruntime", threads=1)
    proto = onnx.load_from_string(q.info["onnx_bytes"])
    excluded = set(q.info["excluded_nodes"])
    assert excluded, "the RBF layer's nodes were not found in the export"
    # The RBF's arithmetic stays float: none of its nodes' outputs is quantised, and its matrix
    # product's prototype operand is a float constant, not a dequantised int8 one. (Its input,
    # the output of F6's activation, is quantised like every activation between layers.)
    producers = {out: n for n in proto.graph.node for out in n.output}
    consumers = {i: n for n in proto.graph.node for i in n.input}
    for node in proto.graph.node:
        if node.name in excluded:
            assert all(consumers[o].op_type != "QuantizeLinear" for o in node.output if o in consumers), node.name
    (matmul,) = [n for n in proto.graph.node if n.name in excluded and n.op_type == "MatMul"]
    assert matmul.input[1] not in producers or producers[matmul.input[1]].op_type != "DequantizeLinear"
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs and all(producers[n.input[0]].op_type == "DequantizeLinear" for n in convs)


def test_fx_quantises_the_papers_lenet5_around_its_special_layers() -> None:
    """FX tracing cannot carry LeNet-5's connection table or its S-layers' shape arithmetic: they
    are FX leaves and stay float, while C1 and the fully connected F6 (and C5) are int8."""
    from convnet.deploy.quantize import int8_modules

    paper = create_model("lenet5").eval()
    x = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    q = quantize(paper, [x], backend="fx", threads=1)
    quantised = int8_modules(q.info["module"])
    assert any("c1" in name for name in quantised) and any("f6" in name for name in quantised), quantised
    assert not any("c3" in name or "output" in name for name in quantised), quantised
    with torch.no_grad():
        ref, out = paper(x), q(x)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    # Untrained, the ten penalties differ by ~1e-4 (no class to agree on); accuracy on the
    # trained default job is benchmarks/int8_accuracy.py's. Close, and not the float model.
    assert 0 < rel < 1e-2


def test_inductor_int8_takes_any_batch_after_calibrating_on_another() -> None:
    """The batch axis stays dynamic: built from a batch of 2, the int8 ConvNeXt answers batches of
    1 and 3 (its graph once guarded on a batch of at least 2) as the float model's shapes."""
    _needs("inductor")
    model = tiny_model("convnext_tiny", 2, in_channels=3).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    q = quantize(model, [x], backend="inductor", example_input=x[:2], threads=1)
    for b in (1, 3):
        assert q(x[:b]).shape == (b, 5)


def test_calibration_reads_only_the_training_split(digits) -> None:
    """By construction: a DataSplits whose val and test splits fail on any use still calibrates,
    and every calibration image is a training image."""

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"calibration touched a held-out split ({name})")

        def __len__(self):
            raise AssertionError("calibration touched a held-out split (len)")

        def __getitem__(self, i):
            raise AssertionError("calibration touched a held-out split (item)")

    guarded = DataSplits(name="digits", train=digits.train, val=Untouchable(), test=Untouchable(),
                         classes=digits.classes, preprocess=digits.preprocess)
    batches = calibration_batches(guarded, images=100, batch_size=32)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    train = digits.train[0].flatten(1)
    for image in torch.cat(batches).flatten(1):
        assert (train == image).all(1).any(), "a calibration image is not a training image"
    # Streamed training data (a Samples dataset) gives the same kind of draw.
    from convnet.data.samples import TensorSamples

    streamed = DataSplits(name="digits", train=TensorSamples(digits.train[0], digits.train[1].tolist()),
                          val=Untouchable(), test=Untouchable(), classes=digits.classes,
                          preprocess=digits.preprocess)
    assert torch.equal(torch.cat(calibration_batches(streamed, images=100)), torch.cat(batches))


def test_backends_are_chosen_by_name_and_an_unknown_one_is_named() -> None:
    model = tiny_model("resnet18", in_channels=3)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown int8 backend 'tensorrt'.*inductor, onnxruntime, openvino, fx"):
        optimize(model, dtype="int8", calibration=[x], backend="tensorrt")
    with pytest.raises(ValueError, match="did you mean openvino"):
        quantize(model, [x], backend="openvin")
    with pytest.raises(ValueError, match="unknown int8 backend 'tensorrt'"):
        bench_model(model, batch_size=2, input_size=(3, 32, 32), dtype="int8", backend="tensorrt", iters=1)
    with pytest.raises(ValueError, match="calibration"):
        optimize(model, dtype="int8")
    with pytest.raises(ValueError, match="calibration set is empty"):
        quantize(model, [], backend="onnxruntime")
    with pytest.raises(ValueError, match="applies to dtype='int8' only"):
        optimize(model, dtype="bf16", backend="openvino")
    assert DEFAULT_INT8_BACKEND in INT8_BACKENDS
    assert set(int8_backends()) <= set(INT8_BACKENDS)


def test_a_missing_engine_names_its_extra(monkeypatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "nncf" else object())
    with pytest.raises(MissingInt8Backend, match=r"nncf.*convnet\[openvino\]"):
        quantize(tiny_model("resnet18", in_channels=3), [torch.randn(2, 3, 32, 32)], backend="openvino")


@pytest.mark.parametrize("backend", ["inductor", "onnxruntime", "openvino"])
def test_int8_ceiling_is_measured_per_engine(backend: str) -> None:
    _needs(backend)
    c = int8_ceiling(backend, threads=1, sizes=(256,), repeats=2, refresh=True)
    assert math.isfinite(c) and c > 0
    assert int8_ceiling(backend, threads=1) == c  # cached for the process, as the fp32/bf16 ones
    assert matmul_ceiling("int8", threads=1, backend=backend) == c  # bench reads the same figure


def test_bench_reports_an_int8_row_against_its_engine_ceiling() -> None:
    _needs("onnxruntime")
    int8_ceiling("onnxruntime", sizes=(256,), repeats=2, refresh=True)
    matmul_ceiling(torch.float32, sizes=(256,), repeats=2, refresh=True)
    r = bench_model(tiny_model("resnet18", in_channels=3), batch_size=2, input_size=(3, 32, 32), dtype="int8",
                    backend="onnxruntime", warmup=1, iters=2)
    assert r["dtype"] == "int8" and r["backend"] == "onnxruntime"
    assert r["ceiling"] == int8_ceiling("onnxruntime")
    assert r["share_of_ceiling"] == pytest.approx(r["flops_per_img"] * r["img_per_s"] / r["ceiling"])
    assert r["share_of_ceiling"] > 0 and r["baseline"]["ceiling"] == matmul_ceiling(torch.float32)
    from convnet.deploy.bench import format_result

    assert "int8 via onnxruntime" in format_result(r) and "GOP/s" in format_result(r)


@pytest.mark.slow
def test_int8_accuracy_of_the_default_job_within_the_bound(tmp_path) -> None:
    """The default job (LeNet-5 with its RBF output and scaled tanh, 60 epochs on the digits,
    ~1 minute on one thread) quantised by the default engine, calibrated on training images:
    at most 0.3 points of test accuracy lost (one of the 360 test digits), >= 99% agreement."""
    from convnet.cli import main as cli_main
    from convnet.train import TrainConfig, load_configured_data, load_run

    assert cli_main(["train", "--out", str(tmp_path / "run"), "threads=1"]) == 0
    model, run_cfg = load_run(tmp_path / "run")
    data = load_configured_data(TrainConfig.from_dict(run_cfg["train"]))
    x_test, y_test = data.test
    q = optimize(model, dtype="int8", calibration=calibration_batches(data), threads=1)
    with torch.inference_mode():
        fp32, int8 = model(x_test).argmax(1), q(x_test).argmax(1)
    fp32_acc, int8_acc = (fp32 == y_test).float().mean().item(), (int8 == y_test).float().mean().item()
    assert fp32_acc >= 0.97
    assert 100 * (fp32_acc - int8_acc) <= 0.3 + 1e-9
    assert (fp32 == int8).float().mean().item() >= 0.99
    assert q.float_modules == ["head.output"]

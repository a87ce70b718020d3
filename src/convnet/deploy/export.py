"""Export a model to ONNX or to a ``torch.export`` program, and check the result numerically.

Both exporters trace the model once at an example input and keep the batch axis and every
spatial axis symbolic, so one file serves any batch size and any input size the architecture
accepts (a fully convolutional model with a global pool: every size above its minimum).

* :func:`export_onnx` uses torch's dynamo-based ONNX exporter (``torch.onnx.export(...,
  dynamo=True)``, which needs the ``onnx`` and ``onnxscript`` packages) and writes the file
  atomically: into a scratch folder beside ``path``, checked there (``check=``), and only then
  renamed over ``path``. A crash, an interrupt or a failed check leaves ``path`` as it was.
* :func:`export_verified` does both: export, verify the scratch file against the model within a
  tolerance, then rename. ``convnet export`` runs it.
* Overwriting: every file written is marked as convnet's (ONNX ``metadata_props`` key
  ``convnet``; a ``convnet.json`` extra file in a ``torch.export`` archive, see
  :func:`is_convnet_export`). An existing file without the mark is replaced only with
  ``force=True`` (``--force``).
* :func:`verify_onnx` runs the file in ONNX Runtime at batch sizes and spatial sizes different
  from the export's, and returns the largest absolute and relative difference to the PyTorch
  model in eval mode.
* :func:`export_program` / :func:`verify_program` do the same for ``torch.export``
  (``torch.export.save`` / ``torch.export.load``, a ``.pt2`` archive).
* :func:`export_openvino` / :func:`verify_openvino` for OpenVINO's IR (``model.xml`` with its
  weights in ``model.bin`` beside it, fp32): the ONNX export, read by ``openvino.convert_model``
  (OpenVINO's TorchScript front end has no rule for some of our operations, e.g. the index_put
  of LeNet-5's connection table; its ONNX front end reads every file our exporter writes), and
  run back by OpenVINO's CPU plugin with its inference precision pinned to f32.

Errors are measured as ``max |onnx - torch|`` (absolute) and that divided by ``max |torch|``
(relative to the output's scale: an element-wise ratio is meaningless where a logit is near
zero).

The optional packages are ``onnx``, ``onnxscript`` (torch's exporter) and ``onnxruntime``
(verification and the ``onnxruntime`` benchmark mode), and ``openvino`` for its format; a
missing one raises :class:`MissingDependencyError` naming what to install.
"""
from __future__ import annotations

import copy
import importlib
import json
import os
import re
import shutil
import tempfile
import warnings
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install onnx onnxscript onnxruntime  (or: pip install 'convnet[export]')"
# ONNX protobuf files cannot exceed 2 GiB; above this the weights go to a side file.
_INLINE_LIMIT = 1_800_000_000
_AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


# The mark of a convnet export: ONNX metadata_props key, and the extra file of a .pt2 archive.
EXPORT_MARK = "convnet"
_PROGRAM_MARK_FILE = "convnet.json"


OPENVINO_HINT = "pip install openvino  (or: pip install 'convnet[openvino]')"
EXPORT_FORMATS = ("onnx", "torch_export", "openvino")
FORMAT_SUFFIX = {"onnx": ".onnx", "torch_export": ".pt2", "openvino": ".xml"}


class MissingDependencyError(ImportError):
    """An optional package (onnx, onnxscript, onnxruntime) is not installed."""


class ExportTargetError(ValueError):
    """The output path holds something convnet did not write (a file without its mark, or a
    folder); replacing it needs ``force=True``."""


class ExportVerificationError(RuntimeError):
    """The exported file does not compute what the model computes (or does not run); the
    target was left as it was."""


def require(*packages: str) -> list[Any]:
    """Import ``packages`` or raise :class:`MissingDependencyError` naming every missing one."""
    mods, missing = [], []
    for name in packages:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(f"{', '.join(missing)} not installed; ONNX export and verification need "
                                     f"them: {INSTALL_HINT}")
    return mods


def require_openvino() -> Any:
    """``import openvino`` or raise :class:`MissingDependencyError` naming what to install."""
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError(f"openvino not installed; the OpenVINO format needs it: {OPENVINO_HINT}") from None
    return openvino


def _example(model: nn.Module, example_input: torch.Tensor | Sequence[int] | None) -> torch.Tensor:
    """The tracing input: a tensor, or zeros of shape (2, *input_size). A batch of one is widened
    to two, because tracers specialise a size-1 axis to a constant (0/1 specialisation)."""
    if example_input is None:
        size = getattr(model, "default_cfg", {}).get("input_size")
        if size is None:
            raise ValueError("give example_input (a tensor or (C, *S)) for a model without default_cfg")
        example_input = tuple(size)
    if not isinstance(example_input, torch.Tensor):
        example_input = torch.randn(2, *(int(s) for s in example_input))
    if example_input.ndim < 3:
        raise ValueError(f"example_input must be (B, C, *S) with 1-3 spatial axes, got shape "
                         f"{tuple(example_input.shape)}")
    if example_input.shape[0] == 1:
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    return example_input.to(torch.float32)


def _dynamic_shapes(x: torch.Tensor, dynamic_batch: bool, dynamic_spatial: bool,
                    auto_batch: bool = False) -> dict[str, Any]:
    spec: dict[int, Any] = {}
    if dynamic_batch:
        spec[0] = torch.export.Dim.AUTO if auto_batch else torch.export.Dim("batch", min=1)
    if dynamic_spatial:
        # AUTO lets the exporter derive each axis' constraints (a minimum size, a divisibility)
        # from the model instead of failing on a hand-written range it cannot prove.
        for axis in range(2, x.ndim):
            spec[axis] = torch.export.Dim.AUTO
    return {"x": spec}


class _Wrapped(nn.Module):
    """forward(x) with the argument name the dynamic-shape spec refers to."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _eval_copy(model: nn.Module) -> nn.Module:
    return _Wrapped(copy.deepcopy(model).float().eval())


def is_convnet_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file convnet exported: an ONNX model whose ``metadata_props`` has
    the key ``convnet``, or a ``torch.export`` archive holding ``extra/convnet.json``. Reads only
    the archive's directory, or the ONNX protobuf without external weights."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix == ".xml":  # OpenVINO IR: <net> ... <rt_info><convnet value="..."/></rt_info>
        try:
            root = ElementTree.parse(path).getroot()
        except (ElementTree.ParseError, OSError):
            return False
        return root.tag == "net" and root.find(f"rt_info/{EXPORT_MARK}") is not None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(n == f"extra/{_PROGRAM_MARK_FILE}" or n.endswith(f"/extra/{_PROGRAM_MARK_FILE}")
                           for n in archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX (or no onnx package): not a file we wrote
        return False
    return any(p.key == EXPORT_MARK for p in proto.metadata_props)


def _guard_target(path: Path, force: bool) -> None:
    """Refuse to replace a folder, or a file convnet did not write unless ``force``."""
    if path.is_dir():
        raise ExportTargetError(f"{path}: is a directory; give a file name for the export")
    if os.path.lexists(path) and not force and not is_convnet_export(path):
        raise ExportTargetError(f"{path}: exists and is not a convnet export (no '{EXPORT_MARK}' mark); "
                                f"pass --force (force=True) to replace it")


def _mark(model: nn.Module, fmt: str) -> str:
    """The JSON stored in the export's mark: what was exported."""
    cfg = getattr(model, "model_config", None) or {}
    return json.dumps({"format": fmt, "model": cfg.get("name", type(model).__name__),
                       "spatial_dims": cfg.get("spatial_dims"), "in_channels": cfg.get("in_channels"),
                       "num_classes": cfg.get("num_classes")}, sort_keys=True)


def _check_example(model: nn.Module, x: torch.Tensor) -> None:
    """The model's own input check on the example, before tracing: the exporters wrap a model's
    error in their own (ONNX's asks to file a PyTorch issue), so a wrong size is reported here,
    in the model's words (the fixed size it needs, or its minimum)."""
    check = getattr(model, "check_input", None)
    if check is None:
        return
    try:
        check(x)
    except ValueError as e:
        raise ValueError(f"cannot export at example input {tuple(x.shape[1:])}: {e}") from None


def spatial_is_fixed(model: nn.Module) -> bool:
    """LeNet-style models whose layers fit one input size exactly: only the batch can vary."""
    return getattr(model, "fixed_input_size", None) is not None and getattr(model, "fixed_input_axes", None) is None


def _atomic_save(write: Any, path: Path, check: Callable[[Path], Any] | None = None) -> Path:
    """Write through ``write(tmp_path)`` in a scratch folder beside ``path``, run ``check`` on the
    written file there, then move every file it wrote into place (the side data file first, the
    file that names it last). If writing or the check fails, ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp_dir / path.name)
        if check is not None:
            check(tmp_dir / path.name)
        produced = sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name)
        for f in produced:
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _size_oblivious() -> Any:
    """Trace with size-oblivious reasoning for backed sizes: checks such as "is this axis 1?"
    (made by contiguity and memory-format logic, e.g. at a model's 1x1 last feature map) take
    the general branch instead of specialising the exported graph to the example's size."""
    from torch.fx.experimental import _config

    return _config.patch(backed_size_oblivious=True)


def _rename_axes(model_proto: Any, x: torch.Tensor, dynamic_batch: bool) -> None:
    """Give the input's symbolic axes readable names (batch, height, width) everywhere in the
    graph; the exporter calls them s0, s53, ... ."""
    dims = model_proto.graph.input[0].type.tensor_type.shape.dim
    names = ["batch", "channels", *_AXIS_NAMES[x.ndim - 2]]
    mapping = {d.dim_param: names[i] for i, d in enumerate(dims) if d.dim_param and (i > 0 or dynamic_batch)}
    if not mapping:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b")
    graph = model_proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = pattern.sub(lambda m: mapping[m.group(1)], d.dim_param)


def export_onnx(model: nn.Module, path: str | os.PathLike, example_input: torch.Tensor | Sequence[int] | None = None,
                dynamic_batch: bool = True, dynamic_spatial: bool = True, opset: int | None = None, *,
                check: Callable[[Path], Any] | None = None, force: bool = False) -> Path:
    """Export ``model`` (in eval mode, fp32) to an ONNX file, atomically, marked as convnet's.

    Args:
        model: a classifier taking one (B, C, *S) tensor; it is copied, not changed.
        path: the .onnx file to write (its folder is created). Models above ~1.8 GB keep their
            weights in ``<path>.data`` beside it (the protobuf 2 GiB limit).
        example_input: a tensor (B, C, *S) or an input size (C, *S) (default: the model's
            ``default_cfg["input_size"]``); traced once.
        dynamic_batch: leave the batch axis symbolic ("batch").
        dynamic_spatial: leave every spatial axis symbolic ("height", "width", ...); ignored for
            a model of fixed input size (LeNet-5), whose spatial size is always fixed.
        opset: ONNX opset version (default: the exporter's).
        check: called with the written file's temporary path before it is renamed to ``path``;
            an exception it raises leaves ``path`` untouched (see :func:`export_verified`).
        force: replace an existing file that is not a convnet export.

    Returns:
        ``path`` as a Path.

    Raises:
        MissingDependencyError: onnx or onnxscript is not installed.
        ExportTargetError: ``path`` is a folder, or a file convnet did not write (without ``force``).
        ValueError: the example input is one the model refuses (names the size it needs).
    """
    onnx, _ = require("onnx", "onnxscript")
    path = Path(path)
    _guard_target(path, force)
    x = _example(model, example_input)
    wrapped = _eval_copy(model)
    _check_example(wrapped.model, x)
    dynamic_spatial = dynamic_spatial and not spatial_is_fixed(model)
    with warnings.catch_warnings(), _size_oblivious():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's business
        program = torch.onnx.export(wrapped, (x,), None, dynamo=True, input_names=["input"], output_names=["logits"],
                                    opset_version=opset, verbose=False,
                                    dynamic_shapes=_dynamic_shapes(x, dynamic_batch, dynamic_spatial))
    inline = sum(p.numel() * p.element_size() for p in model.parameters()) < _INLINE_LIMIT

    def write(tmp: Path) -> None:
        program.save(tmp, external_data=not inline)
        # The graph without its weights (they stay where the exporter put them: inline, or in
        # the side file the graph names): mark it, and rename its symbolic axes.
        proto = onnx.load(str(tmp), load_external_data=False)
        if inline:
            _rename_axes(proto, x, dynamic_batch)
        onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                            EXPORT_MARK: _mark(model, "onnx")})
        onnx.save(proto, str(tmp))

    return _atomic_save(write, path, check)


def verification_inputs(example_input: torch.Tensor | Sequence[int], batch_sizes: Sequence[int] = (1, 3),
                        spatial: bool = True, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs at every batch size in ``batch_sizes`` x two spatial sizes other than the
    example's (or the example's own size where ``spatial`` is False).

    For an example of spatial size s per axis the sizes are s + s // 4 and s + s // 2: larger,
    so never below a model's minimum input, and (for s a multiple of 32) not multiples of 32,
    which exercises the odd-size paths (floor division) of strided layers.
    """
    shape = tuple(example_input.shape[1:]) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    c, size = shape[0], shape[1:]
    sizes = [tuple(v + v // 4 for v in size), tuple(v + v // 2 for v in size)] if spatial else [size]
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, *s, generator=g) for b in batch_sizes for s in sizes]


def _errors(ref: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    ref, got = ref.detach().double(), torch.as_tensor(got).double()
    if ref.shape != got.shape:
        raise AssertionError(f"exported output shape {tuple(got.shape)} != PyTorch output shape {tuple(ref.shape)}")
    abs_err = float((ref - got).abs().max())
    return abs_err, abs_err / max(float(ref.abs().max()), 1e-12)


def _compare(run: Any, model: nn.Module, inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
    cases = []
    with torch.no_grad():
        for x in inputs:
            a, r = _errors(model(x), run(x))
            cases.append({"shape": list(x.shape), "max_abs_err": a, "max_rel_err": r})
    return {"max_abs_err": max(c["max_abs_err"] for c in cases), "max_rel_err": max(c["max_rel_err"] for c in cases),
            "cases": cases}


def _is_symbolic(dim: Any) -> bool:
    return not isinstance(dim, int)


def verify_onnx(path: str | os.PathLike, model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                providers: Sequence[str] | None = None, threads: int | None = None) -> dict[str, Any]:
    """The largest difference between ONNX Runtime running ``path`` and ``model`` (eval, fp32).

    Args:
        path: an ONNX file.
        model: the PyTorch model it was exported from.
        inputs: tensors to compare on; one tensor (e.g. the export's example) is expanded by
            :func:`verification_inputs` to batch sizes 1 and 3 and, where the file's spatial
            axes are symbolic, two larger spatial sizes; None reads the input size from the file.
        providers: ONNX Runtime execution providers (default: CPU).
        threads: ORT intra-op threads (default: ORT's choice).

    Returns:
        ``{"max_abs_err", "max_rel_err", "cases": [{"shape", "max_abs_err", "max_rel_err"}]}``
        where rel = abs / max |PyTorch output|.
    """
    (ort,) = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=list(providers or ["CPUExecutionProvider"]))
    meta = session.get_inputs()[0]
    dynamic_batch = _is_symbolic(meta.shape[0])
    dynamic_spatial = all(_is_symbolic(d) for d in meta.shape[2:])
    if inputs is None:
        if dynamic_spatial or any(_is_symbolic(d) for d in meta.shape[1:]):
            size = getattr(model, "default_cfg", {}).get("input_size")
            if size is None:
                raise ValueError(f"{path}: symbolic input shape {meta.shape}; pass inputs=")
        else:
            size = meta.shape[1:]
        inputs = torch.zeros(1, *size)
    if isinstance(inputs, torch.Tensor):
        inputs = verification_inputs(inputs, (1, 3) if dynamic_batch else (int(meta.shape[0]),), dynamic_spatial)
    model = copy.deepcopy(model).float().eval()
    return _compare(lambda x: session.run(None, {meta.name: x.numpy()})[0], model, inputs)


def export_program(model: nn.Module, path: str | os.PathLike,
                   example_input: torch.Tensor | Sequence[int] | None = None,
                   dynamic_batch: bool = True, dynamic_spatial: bool = True, *,
                   check: Callable[[Path], Any] | None = None, force: bool = False) -> Path:
    """``torch.export.export`` the model (eval, fp32) with symbolic batch and spatial axes and
    ``torch.export.save`` it to ``path`` (a .pt2 archive, marked with ``extra/convnet.json``),
    atomically; arguments, ``check`` and ``force`` as in :func:`export_onnx`. Load it back with
    ``torch.export.load(path).module()``.

    The program checks its input's shape at run time. Tracing may bound a symbolic axis where
    the fake convolution picks a memory format by size (a 1x1 map, a batch of one): ResNet,
    MobileNet and EfficientNet accept any batch and size, ConvNeXt traced at 32 only 32..63;
    an upper bound makes this re-trace at twice the size (ConvNeXt: 64 and up), where ConvNeXt's
    program also asserts batch >= 2 (a run-time check that :func:`program_input_ranges`, which
    reads the range constraints, does not list). The ONNX file has no such checks.
    """
    path = Path(path)
    _guard_target(path, force)
    x = _example(model, example_input)
    wrapped = _eval_copy(model)
    _check_example(wrapped.model, x)
    dynamic_spatial = dynamic_spatial and not spatial_is_fixed(model)
    for _ in range(3):
        with warnings.catch_warnings(), _size_oblivious():
            warnings.simplefilter("ignore")
            # AUTO batch: where a layer guards "batch != 1" (3-D convolutions pick a memory
            # format by it) the program asserts it instead of the export failing.
            program = torch.export.export(wrapped, (x,),
                                          dynamic_shapes=_dynamic_shapes(x, dynamic_batch, dynamic_spatial, True))
        ranges = program_input_ranges(program)
        if not dynamic_spatial or all(hi is None for _, hi in ranges[2:]):
            break
        # A size-dependent branch at the example size (a 1x1 last map picks another memory
        # format) bounded the range from above: trace again at twice the size, where the
        # general branch is taken, and accept the higher lower bound.
        x = torch.randn(x.shape[0], x.shape[1], *(2 * s for s in x.shape[2:]))
    mark = {_PROGRAM_MARK_FILE: _mark(model, "torch_export")}
    return _atomic_save(lambda tmp: torch.export.save(program, tmp, extra_files=mark), path, check)


def program_input_ranges(program: Any) -> list[tuple[int, int | None]]:
    """(min, max) of every input axis an ExportedProgram accepts (max None: unbounded; a fixed
    axis has min == max)."""
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name not in
                program.graph_signature.inputs_to_parameters and n.name not in program.graph_signature.inputs_to_buffers)
    out = []
    for dim in node.meta["val"].shape:
        if isinstance(dim, int):
            out.append((dim, dim))
            continue
        vr = program.range_constraints.get(dim.node.expr)
        lo = int(vr.lower) if vr is not None else 0
        hi = str(vr.upper) if vr is not None else "oo"
        out.append((lo, int(hi) if hi.lstrip("-").isdigit() else None))  # sympy's int_oo prints "int_oo"
    return out


def verify_program(path: str | os.PathLike, model: nn.Module,
                   inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                   batch_sizes: Sequence[int] = (1, 3)) -> dict[str, Any]:
    """Load a saved ``torch.export`` program and compare it with ``model`` as
    :func:`verify_onnx` does (one tensor is expanded by :func:`verification_inputs`, within the
    sizes the program accepts); the result adds ``input_ranges`` (see
    :func:`program_input_ranges`)."""
    program = torch.export.load(str(path))
    ranges = program_input_ranges(program)
    if inputs is None:
        size = getattr(model, "default_cfg", {}).get("input_size")
        if size is None:
            raise ValueError("verify_program needs inputs= for a model without default_cfg")
        inputs = torch.zeros(1, *size)
    if isinstance(inputs, torch.Tensor):
        fixed_batch = ranges[0][0] == ranges[0][1]
        fixed_spatial = all(lo == hi for lo, hi in ranges[2:])
        if not fixed_spatial:  # a re-traced program (see export_program) may start above the example
            size = [max(s, lo) for s, (lo, _) in zip(inputs.shape[2:], ranges[2:])]
            inputs = torch.zeros(1, inputs.shape[1], *size)
        inputs = verification_inputs(inputs, (ranges[0][0],) if fixed_batch else tuple(batch_sizes),
                                     not fixed_spatial)
    model = copy.deepcopy(model).float().eval()
    return {**_compare(program.module(), model, inputs), "input_ranges": ranges}


def export_openvino(model: nn.Module, path: str | os.PathLike,
                    example_input: torch.Tensor | Sequence[int] | None = None, dynamic_batch: bool = True,
                    dynamic_spatial: bool = True, *, check: Callable[[Path], Any] | None = None,
                    force: bool = False) -> Path:
    """Export ``model`` (eval, fp32) to OpenVINO's IR: ``path`` (.xml) and its weights beside it
    (same name, .bin), atomically (the .bin is moved into place first), marked as convnet's in
    the model's ``rt_info``; arguments, ``check`` and ``force`` as in :func:`export_onnx`.

    The model goes through :func:`export_onnx` (in a scratch folder) and
    ``openvino.convert_model``; the symbolic axes carry over. Weights stay fp32
    (``compress_to_fp16=False``: OpenVINO's default halves them, which would fail a 1e-3 check
    on some models). Load it back with ``openvino.Core().read_model(path)``.
    """
    ov = require_openvino()
    require("onnx", "onnxscript")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO export is a .xml file (its weights go to {path.stem}.bin beside it)")
    _guard_target(path, force)
    x = _example(model, example_input)
    with tempfile.TemporaryDirectory(prefix="convnet-openvino-") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", x, dynamic_batch, dynamic_spatial)
        ov_model = ov.convert_model(str(onnx_path))  # reads the weights now: the folder may go
    ov_model.set_rt_info(_mark(model, "openvino"), [EXPORT_MARK])
    return _atomic_save(lambda tmp: ov.save_model(ov_model, str(tmp), compress_to_fp16=False), path, check)


def openvino_compiled(model: Any, threads: int | None = None) -> Any:
    """An OpenVINO model (or IR path) compiled for the CPU in fp32 (see :func:`export_openvino`)."""
    ov = require_openvino()
    core = ov.Core()
    if isinstance(model, (str, os.PathLike)):
        model = core.read_model(str(model))
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def verify_openvino(path: str | os.PathLike, model: nn.Module,
                    inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                    threads: int | None = None) -> dict[str, Any]:
    """Run an OpenVINO IR file (CPU, f32) and compare it with ``model`` as :func:`verify_onnx`
    does: one tensor is expanded to batch sizes 1 and 3 and, where the file's spatial axes are
    dynamic, two larger spatial sizes."""
    compiled = openvino_compiled(path, threads)
    shape = compiled.input(0).get_partial_shape()
    dynamic_batch = shape[0].is_dynamic
    dynamic_spatial = all(d.is_dynamic for d in list(shape)[2:])
    if inputs is None:
        size = getattr(model, "default_cfg", {}).get("input_size")
        if size is None:
            raise ValueError(f"{path}: verify_openvino needs inputs= for a model without default_cfg")
        inputs = torch.zeros(1, *size)
    if isinstance(inputs, torch.Tensor):
        batches = (1, 3) if dynamic_batch else (shape[0].get_length(),)
        inputs = verification_inputs(inputs, batches, dynamic_spatial)
    request = compiled.create_infer_request()
    model = copy.deepcopy(model).float().eval()
    return _compare(lambda x: torch.from_numpy(request.infer({0: x.numpy()})[0].copy()), model, inputs)


def export_verified(model: nn.Module, path: str | os.PathLike, fmt: str = "onnx",
                    example_input: torch.Tensor | Sequence[int] | None = None, *, dynamic_batch: bool = True,
                    dynamic_spatial: bool = True, opset: int | None = None, tolerance: float = 1e-3,
                    force: bool = False) -> dict[str, Any]:
    """Export, verify the written file against ``model`` before it replaces anything, then rename.

    The file is run (ONNX Runtime, or ``torch.export.load``) at the batch and spatial sizes of
    :func:`verify_onnx` / :func:`verify_program`; if it fails to run, gives another output shape,
    or differs from the PyTorch model by more than ``tolerance`` relative to the output's scale,
    nothing is renamed and ``path`` keeps what it held.

    Args:
        model: the classifier; copied, not changed.
        path: the file to write.
        fmt: "onnx", "torch_export" or "openvino" (``path`` a .xml file; its .bin goes beside it).
        example_input: as in :func:`export_onnx`.
        dynamic_batch, dynamic_spatial, opset: as in :func:`export_onnx` (opset: ONNX only).
        tolerance: largest accepted ``max |export - torch| / max |torch|``.
        force: replace an existing file that is not a convnet export.

    Returns:
        the verification report (:func:`verify_onnx`'s keys, plus ``input_ranges`` for
        torch.export) with ``path`` and ``format``.

    Raises:
        ExportVerificationError: the written file failed verification (``path`` untouched).
        ExportTargetError, MissingDependencyError, ValueError: as in :func:`export_onnx`.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    if fmt == "onnx":
        require(*ONNX_PACKAGES)  # before the export's minutes, not after
    elif fmt == "openvino":
        require_openvino()
        require("onnx", "onnxscript")
    path = Path(path)
    x = _example(model, example_input)
    report: dict[str, Any] = {}

    def verify(tmp: Path) -> None:
        try:
            verifier = {"onnx": verify_onnx, "torch_export": verify_program, "openvino": verify_openvino}[fmt]
            result = verifier(tmp, model, x)
        except MissingDependencyError:
            raise
        except Exception as e:  # ORT or the program rejects an input, or another output shape
            raise ExportVerificationError(f"{path}: the exported file failed verification, left unchanged: "
                                          f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from e
        if not result["max_rel_err"] <= tolerance:
            raise ExportVerificationError(f"{path}: the exported file differs from the PyTorch model by "
                                          f"{result['max_rel_err']:.2e} (relative), above the tolerance "
                                          f"{tolerance:g}; left unchanged")
        report.update(result)

    if fmt == "onnx":
        export_onnx(model, path, x, dynamic_batch, dynamic_spatial, opset, check=verify, force=force)
    elif fmt == "openvino":
        export_openvino(model, path, x, dynamic_batch, dynamic_spatial, check=verify, force=force)
    else:
        export_program(model, path, x, dynamic_batch, dynamic_spatial, check=verify, force=force)
    return {"path": str(path), "format": fmt, **report}

"""Translation equivariance of every layer and invariance of the logits.

A convolution commutes with shifts: shifting its input by ``s`` pixels shifts its output by
``s`` units. A layer with cumulative stride (jump) ``J`` maps an input shift ``s`` to an output
shift ``s / J``, which is a whole number of units only when ``J`` divides ``s``; for other shifts
strided sampling aliases and the map changes by more than a shift (Azulay & Weiss, "Why do deep
convolutional networks generalize so poorly to small image transformations?", JMLR 2019; Zhang,
"Making Convolutional Networks Shift-Invariant Again", ICML 2019). Zero padding breaks
equivariance near the borders as well.

For every module with a spatial output, :func:`equivariance` reports the relative error
``||f(T_s x) - T_{s/J} f(x)|| / ||T_{s/J} f(x)||`` (norms over the compared units, all
samples and channels) for two kinds of shift:

* **circular**: ``T_s`` is ``torch.roll`` on the input, and on the output by ``s / J`` units;
  a stride-1 network with circular padding is then exactly equivariant.
* **cropped**: two windows of one larger input, ``s`` pixels apart, so new content enters at
  one border (what a camera does). Only the central ``interior`` fraction (default one half) of
  the units both outputs share is compared, away from the borders where padding differs.

Both are measured at two input shifts per layer: the requested ``shift`` and the *aligned*
shift, the smallest multiple of the layer's jump that is at least ``shift`` (exact for an
equivariant strided layer). Where ``s / J`` is not a whole number the output is compared with
its shifts by ``floor(s / J)`` and ``ceil(s / J)`` units and the smaller error is reported (the
most favourable alignment), so the error measures what aliasing destroys and not a half-unit
misalignment.

The jump of a layer comes from ``analysis.receptive_field.receptive_fields``; for a layer that
trace does not cover it is estimated from shapes as ``round(S_in / S_out)`` per axis (exact for
"same"-padded layers, not for unpadded ones, whose outputs lose k - 1 units).
The logits' invariance is their relative change (each sample's logits centred first: softmax
ignores a common offset, which would otherwise hide changes in near-tied logits) and the share
of samples whose top-1 class survives, under both kinds of shift.
The model runs in eval mode (restored afterwards).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._inputs import probe_setup

__all__ = ["EquivarianceReport", "LayerEquivariance", "LogitInvariance", "equivariance"]


@dataclass
class LayerEquivariance:
    """One layer's equivariance errors (relative, 0 = exactly equivariant)."""

    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch axis
    jump: tuple[int, ...]  # estimated cumulative stride per spatial axis
    shift: tuple[int, ...]  # input shift per axis (the requested one)
    output_shift: tuple[float, ...]  # shift / jump
    exact: bool  # whether every axis' output shift is a whole number of units
    circular: float
    cropped: float
    aligned_shift: tuple[int, ...]  # the smallest multiple of jump >= shift
    circular_aligned: float
    cropped_aligned: float


@dataclass
class LogitInvariance:
    """How much the logits change under the requested input shift."""

    circular_change: float  # ||z(T x) - z(x)|| / ||z(x)||, logits centred per sample
    circular_top1: float  # share of samples whose top-1 class is unchanged
    cropped_change: float
    cropped_top1: float


@dataclass
class EquivarianceReport:
    model: str
    input_size: tuple[int, ...]
    shift: tuple[int, ...]
    interior: float
    layers: list[LayerEquivariance] = field(default_factory=list)
    logits: LogitInvariance | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def first_broken(self, kind: str = "circular", tol: float = 1e-3) -> str | None:
        """The first layer whose error at the requested shift exceeds ``tol``."""
        return next((r.name for r in self.layers if getattr(r, kind) > tol), None)

    def table(self) -> str:
        s = ",".join(map(str, self.shift))
        headers = ("Layer (type)", "Output shape", "Jump", f"circ@{s}", f"crop@{s}", "aligned",
                   "circ@al", "crop@al")
        rows = [(f"{r.name} ({r.type})", str(list(r.output_shape)), ",".join(map(str, r.jump)),
                 f"{r.circular:.2e}", f"{r.cropped:.2e}", ",".join(map(str, r.aligned_shift)),
                 f"{r.circular_aligned:.2e}", f"{r.cropped_aligned:.2e}") for r in self.layers]
        widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]

        def fmt(cols: Sequence[str]) -> str:
            return "   ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))

        rule = "-" * len(fmt(headers))
        lines = [(f"Equivariance of {self.model} at input {list(self.input_size)}, shift {s} "
                  f"(relative error; cropped: central {self.interior:.0%} of the shared units)"),
                 rule, fmt(headers), rule, *(fmt(r) for r in rows), rule]
        if self.logits is not None:
            lg = self.logits
            lines.append(f"logits: circular change {lg.circular_change:.2e} (top-1 kept {lg.circular_top1:.0%}), "
                         f"cropped change {lg.cropped_change:.2e} (top-1 kept {lg.cropped_top1:.0%})")
        broken = self.first_broken()
        lines.append(f"first layer off circular equivariance at shift {s}: {broken or 'none'}")
        return "\n".join(lines)


def _record(model: nn.Module, x: torch.Tensor, names: set[str] | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run the model once; the (cloned) output of every named module with a spatial output.
    Modules that return their input object (Identity, DropPath in eval mode, in-place
    activations) are skipped, and so is a module whose enclosing module returns the very same
    tensor (the last layer of a Sequential: the outer name is kept)."""
    outs: dict[str, torch.Tensor] = {}
    ident: dict[str, int] = {}
    alive: list[torch.Tensor] = []  # the raw outputs, kept so that no id is reused in this pass
    hooks = []
    nd = x.ndim

    def hook(name: str):
        def fn(module: nn.Module, args: Any, out: Any) -> None:
            passthrough = bool(args) and out is args[0]  # Identity, eval DropPath, in-place act
            if isinstance(out, torch.Tensor) and out.ndim == nd and name not in outs \
                    and not (passthrough and names is None):
                outs[name] = out.detach().clone()  # clone: an in-place op may change it later
                ident[name] = id(out)
                alive.append(out)
        return fn

    for name, m in model.named_modules():
        if name and (names is None or name in names):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    keep: dict[str, torch.Tensor] = {}
    for name, value in outs.items():
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        shadowed = False
        while parent:
            if parent in ident and ident[parent] == ident[name]:
                shadowed = True
                break
            parent = parent.rsplit(".", 1)[0] if "." in parent else ""
        if not shadowed or names is not None:
            keep[name] = value
    return keep, logits


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    den = b.double().norm()
    num = (a.double() - b.double()).norm()
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return float(num / den)


def _candidates(out_shift: Sequence[float]) -> list[tuple[int, ...]]:
    opts = [sorted({math.floor(o), math.ceil(o)}) for o in out_shift]
    combos: list[tuple[int, ...]] = [()]
    for o in opts:
        combos = [c + (v,) for c in combos for v in o]
    return combos


def _circular_error(y: torch.Tensor, y_shifted: torch.Tensor, out_shift: Sequence[float]) -> float:
    dims = tuple(range(2, y.ndim))
    return min(_rel(y_shifted, torch.roll(y, c, dims)) for c in _candidates(out_shift))


def _cropped_error(ya: torch.Tensor, yb: torch.Tensor, out_shift: Sequence[float], interior: float) -> float:
    """x_b is x_a's window moved by s: y_b[i] should equal y_a[i + s/J] on shared units."""
    best = float("inf")
    for c in _candidates(out_shift):
        sl_a, sl_b = [slice(None), slice(None)], [slice(None), slice(None)]
        ok = True
        for n, o in zip(ya.shape[2:], c):
            shared = n - o  # units i of y_b with i + o inside y_a
            if shared <= 0:
                ok = False
                break
            margin = round(shared * (1 - interior) / 2)
            lo, hi = margin, shared - margin
            if hi <= lo:  # too few units: compare the middle one
                lo, hi = shared // 2, shared // 2 + 1
            sl_b.append(slice(lo, hi))
            sl_a.append(slice(lo + o, hi + o))
        if ok:
            best = min(best, _rel(yb[tuple(sl_b)], ya[tuple(sl_a)]))
    return best if math.isfinite(best) else float("nan")


def _jumps(model: nn.Module, input_size: tuple[int, ...], outputs: dict[str, torch.Tensor]
           ) -> dict[str, tuple[int, ...]]:
    """Every layer's jump: from analysis.receptive_field's trace where it knows the layer, else
    estimated from shapes as round(S_in / S_out) (right for padded layers; unpadded ones lose
    k - 1 units per layer, which this estimate cannot tell from striding)."""
    spatial = input_size[1:]
    known: dict[str, tuple[int, ...]] = {}
    try:
        from .receptive_field import receptive_fields

        known = {k: tuple(int(j) for j in rf.jump) for k, rf in receptive_fields(model, input_size).items()}
    except Exception:  # noqa: BLE001 - no module, or an op without a rule: the estimate below
        known = {}
    return {k: known.get(k) or tuple(max(1, round(s / o)) if o else 1 for s, o in zip(spatial, v.shape[2:]))
            for k, v in outputs.items()}


def _top1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def equivariance(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    shift: int | Sequence[int] = 1,
    inputs: torch.Tensor | None = None,
    n_inputs: int = 4,
    layers: Sequence[str] | None = None,
    interior: float = 0.5,
    seed: int = 0,
) -> EquivarianceReport:
    """Per-layer equivariance errors and the logits' invariance under an input shift.

    Args:
        model: any module mapping (B, C, *S) to logits (B, K); every submodule whose output has
            the input's rank is measured.
        input_size: (C, *S); None means ``model.default_cfg["input_size"]`` (or ``inputs``' shape).
        shift: the input shift in pixels, one for all spatial axes or one per axis.
        inputs: inputs (N, C, *S) to use; None draws ``n_inputs`` standard-normal inputs. For the
            cropped shift the inputs are extended at the far border by circular padding.
        layers: module names to measure; None measures every module with a spatial output.
        interior: the central fraction of the shared units compared for cropped shifts.
        seed: the noise generator's seed.

    Returns:
        An EquivarianceReport (``.table()`` prints it, ``.to_json()`` serialises it).
    """
    if not 0 < interior <= 1:
        raise ValueError(f"interior must be in (0, 1], got {interior}")
    device, dtype, input_size = probe_setup(model, input_size, inputs, "equivariance")
    spatial = input_size[1:]
    nd = len(spatial)
    shifts = (int(shift),) * nd if isinstance(shift, int) else tuple(int(v) for v in shift)
    if len(shifts) != nd or any(v < 0 for v in shifts):
        raise ValueError(f"shift must be one nonnegative int or {nd} of them, got {shift!r}")
    dims = tuple(range(2, 2 + nd))
    names = set(layers) if layers is not None else None

    was_training = model.training
    model.eval()
    try:
        # One forward pass of the unshifted input first, to learn every layer's jump.
        if inputs is None:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn((n_inputs, *input_size), generator=gen, dtype=dtype)
        else:
            x = inputs.to(dtype=dtype)
        x = x.to(device)
        base, logits = _record(model, x, names)
        if names is not None and (missing := sorted(names - set(base))):
            raise ValueError(f"no spatial output recorded for layer(s) {missing} of {type(model).__name__}")
        jumps = _jumps(model, input_size, base)
        aligned = {k: tuple(j * math.ceil(s / j) for s, j in zip(shifts, jumps[k])) for k in base}
        needed = sorted({shifts, *aligned.values()})
        big = max(max(a) for a in needed) if needed else 0
        # Cropped windows: x_a = x_big[..., :S], x_b = x_big[..., s:s+S] (x_big = x padded circularly).
        x_big = x
        for d, n in zip(dims, spatial):
            x_big = torch.cat([x_big, x_big.narrow(d, 0, min(big, n))], d) if big else x_big
            while x_big.shape[d] < n + big:  # shifts larger than the input: wrap again
                x_big = torch.cat([x_big, x.narrow(d, 0, min(n, n + big - x_big.shape[d]))], d)

        def crop(s: tuple[int, ...]) -> torch.Tensor:
            out = x_big
            for d, n, v in zip(dims, spatial, s):
                out = out.narrow(d, v, n)
            return out

        circ: dict[tuple[int, ...], tuple[dict[str, torch.Tensor], torch.Tensor]] = {}
        crop_out: dict[tuple[int, ...], tuple[dict[str, torch.Tensor], torch.Tensor]] = {}
        for s in needed:
            circ[s] = _record(model, torch.roll(x, s, dims), names)
            crop_out[s] = _record(model, crop(s), names)
    finally:
        model.train(was_training)

    report = EquivarianceReport(model=getattr(model, "default_cfg", {}).get("name", type(model).__name__),
                                input_size=input_size, shift=shifts, interior=interior)
    modules = dict(model.named_modules())
    for name, y in base.items():
        j = jumps[name]
        errs = {}
        for tag, s in (("", shifts), ("_aligned", aligned[name])):
            o = tuple(v / jj for v, jj in zip(s, j))
            yc = circ[s][0].get(name)
            yb = crop_out[s][0].get(name)
            ok = yc is not None and yc.shape == y.shape and yb is not None and yb.shape == y.shape
            errs["circular" + tag] = _circular_error(y, yc, o) if ok else float("nan")
            errs["cropped" + tag] = _cropped_error(y, yb, o, interior) if ok else float("nan")
        report.layers.append(LayerEquivariance(
            name=name, type=type(modules[name]).__name__, output_shape=tuple(y.shape[1:]), jump=j,
            shift=shifts, output_shift=tuple(v / jj for v, jj in zip(shifts, j)),
            exact=all(v % jj == 0 for v, jj in zip(shifts, j)), aligned_shift=aligned[name], **errs))
    if isinstance(logits, torch.Tensor) and logits.ndim == 2:
        zc, zb = circ[shifts][1], crop_out[shifts][1]

        def centred(z: torch.Tensor) -> torch.Tensor:  # softmax ignores a per-sample offset
            return z - z.mean(1, keepdim=True)

        report.logits = LogitInvariance(
            circular_change=_rel(centred(zc), centred(logits)), circular_top1=_top1(zc, logits),
            cropped_change=_rel(centred(zb), centred(logits)), cropped_top1=_top1(zb, logits))
    return report

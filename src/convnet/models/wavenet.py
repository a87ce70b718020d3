"""WaveNet: A. van den Oord, S. Dieleman, H. Zen, K. Simonyan, O. Vinyals, A. Graves,
N. Kalchbrenner, A. Senior, K. Kavukcuoglu, "WaveNet: A Generative Model for Raw Audio",
arXiv:1609.03499, 2016; fast generation after T. Le Paine et al., "Fast Wavenet Generation
Algorithm", arXiv:1611.09482, 2016.

An autoregressive model of 8-bit mu-law audio (§2.2: mu = 255, 256 levels; the companding is
``convnet.data.audio.mu_law_encode``/``mu_law_decode``): at every time step t the output is a
softmax over the 256 levels of sample t + 1 given samples up to t.

- §2.1: causal convolutions of kernel 2 (each layer pads (k - 1) x dilation zeros on the left
  only, so no output sees the future), dilated 1, 2, ..., 512 and the stack repeated ``blocks``
  times ("1, 2, 4, ..., 512, 1, 2, 4, ..., 512, 1, 2, 4, ..., 512").
- §2.3: gated activation units z = tanh(W_f * x) ⊙ sigmoid(W_g * x).
- §2.4, Fig. 4: each layer's z goes through a 1x1 convolution added to the layer's input
  (residual) and another 1x1 convolution into the skip connections; the skips are summed, then
  ReLU, 1x1, ReLU, 1x1 to the 256 logits. The last layer has no residual convolution (its
  output would be unused).
- Input: the mu-law codes, one-hot (``input_mode="one_hot"``, the paper's) or through an
  embedding (``"embedding"``), then a 1x1 convolution (an embedding lookup) to the residual
  width. Fig. 4's first "causal conv" is taken as this 1x1 layer, so the receptive field is
  exactly (k - 1) x sum(dilations) x blocks + 1 (1,023 B + 1 for k = 2, dilations 1..512).
- The paper does not give channel widths; the defaults are those of the widely used
  reimplementation ibab/tensorflow-wavenet (32 residual, 32 gate, 512 skip channels) with the
  paper's three stacks of 1..512.

Conventions: ``in_channels`` is the number of input levels (the one-hot width, 256) and
``num_classes`` the number of output levels (256); ``spatial_dims`` is 1. ``forward`` takes codes
(B, T) int64 or one-hot (B, in_channels, T) float and returns logits (B, num_classes, T); the
training target at t is the code at t + 1 (cross-entropy over the 256 levels; the registry's
task is ``"generate"``). Global and local conditioning (§2.5) are not built.

Generation (:func:`generate`) runs either the naive way, re-running the network over the last
receptive field of samples for every new sample, or the cached way of Paine et al.: each layer
keeps a queue of its last (k - 1) x dilation inputs, so a new sample costs one kernel
application per layer. Both draw the same samples from the same generator (a sample is the
inverse CDF of the softmax at one uniform draw).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._registry import register


@dataclass(frozen=True)
class WaveNetSpec:
    """WaveNet's hyperparameters (§2.1, §2.4; widths of ibab/tensorflow-wavenet)."""

    blocks: int = 3  # repetitions of the dilation stack (§2.1's example shows three)
    layers_per_block: int = 10  # dilations 1, 2, ..., 2^(layers - 1) = 512
    kernel_size: int = 2
    residual_channels: int = 32
    dilation_channels: int = 32  # width of the gated unit z
    skip_channels: int = 512
    input_mode: str = "one_hot"  # "one_hot" (the paper) or "embedding"

    @property
    def dilations(self) -> list[int]:
        return [2 ** i for i in range(self.layers_per_block)] * self.blocks

    @property
    def receptive_field(self) -> int:
        """(k - 1) x sum(dilations) x blocks + 1 samples."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1


class CausalConv(nn.Module):
    """A dilated convolution that sees only the present and the past: (k - 1) x dilation zeros
    on the left, none on the right, so output t depends on inputs t - (k - 1) d, ..., t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.left = (kernel_size - 1) * dilation
        self.conv = L.conv(1, in_channels, out_channels, kernel_size, padding=0, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left, 0)))  # (B, C, T) -> (B, C', T)


class GatedResidualLayer(nn.Module):
    """One layer of Fig. 4: gated unit on a causal dilated convolution, residual and skip 1x1s."""

    def __init__(self, spec: WaveNetSpec, dilation: int, last: bool = False):
        super().__init__()
        r, g, s = spec.residual_channels, spec.dilation_channels, spec.skip_channels
        self.dilation = dilation
        self.kernel_size = spec.kernel_size
        self.filter_conv = CausalConv(r, g, spec.kernel_size, dilation)  # W_f
        self.gate_conv = CausalConv(r, g, spec.kernel_size, dilation)  # W_g
        self.residual = None if last else L.conv(1, g, r, 1)
        self.skip = L.conv(1, g, s, 1)

    def gated(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.tanh(f) * torch.sigmoid(g)  # §2.3, Eq. 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.gated(self.filter_conv(x), self.gate_conv(x))
        out = x if self.residual is None else x + self.residual(z)
        return out, self.skip(z)

    # Fast generation (Paine et al. 2016): a ring buffer of the last (k - 1) x dilation inputs.
    def new_queue(self, batch: int, ref: torch.Tensor) -> dict:
        size = (self.kernel_size - 1) * self.dilation
        return {"buffer": ref.new_zeros(batch, ref.shape[1], size), "pos": 0}

    def step(self, x: torch.Tensor, queue: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x (B, R, 1) -> (residual output (B, R, 1), skip (B, S, 1)), updating
        ``queue`` in place. The kernel sees x[t - (k-1)d], ..., x[t - d] from the queue and x[t]."""
        buf, pos, d = queue["buffer"], queue["pos"], self.dilation
        size = buf.shape[-1]
        past = [buf[:, :, (pos + j * d) % size] for j in range(self.kernel_size - 1)]
        window = torch.stack([*past, x[:, :, 0]], -1)  # (B, R, k): the dilated taps, oldest first
        f = F.conv1d(window, self.filter_conv.conv.weight, self.filter_conv.conv.bias)
        g = F.conv1d(window, self.gate_conv.conv.weight, self.gate_conv.conv.bias)
        buf[:, :, pos] = x[:, :, 0]  # the oldest entry leaves, x[t] enters
        queue["pos"] = (pos + 1) % size
        z = self.gated(f, g)
        out = x if self.residual is None else x + self.residual(z)
        return out, self.skip(z)


class WaveNet(nn.Module):
    """WaveNet: ``stem`` (one-hot 1x1 or embedding), ``blocks`` (every gated residual layer, in
    order), ``head`` (ReLU, 1x1, ReLU, 1x1 on the summed skips)."""

    def __init__(self, spec: WaveNetSpec = WaveNetSpec(), spatial_dims: int = 1, in_channels: int = 256,
                 num_classes: int = 256):
        super().__init__()
        if spatial_dims != 1:
            raise ValueError(f"WaveNet is causal over time: spatial_dims must be 1, got {spatial_dims}")
        if spec.input_mode not in ("one_hot", "embedding"):
            raise ValueError(f"input_mode must be 'one_hot' or 'embedding', got {spec.input_mode!r}")
        if spec.kernel_size < 2 or spec.blocks < 1 or spec.layers_per_block < 1:
            raise ValueError(f"WaveNet needs kernel_size >= 2, blocks >= 1 and layers_per_block >= 1, got {spec}")
        self.spec = spec
        self.spatial_dims = 1
        self.in_channels = in_channels
        self.num_classes = num_classes
        r, s = spec.residual_channels, spec.skip_channels
        if spec.input_mode == "one_hot":
            self.stem = L.conv(1, in_channels, r, 1)
        else:
            self.stem = nn.Embedding(in_channels, r)
        dilations = spec.dilations
        self.blocks = nn.ModuleList(GatedResidualLayer(spec, d, last=i == len(dilations) - 1)
                                    for i, d in enumerate(dilations))
        self.head = nn.Sequential(nn.ReLU(), L.conv(1, s, s, 1), nn.ReLU(), L.conv(1, s, num_classes, 1))

    @property
    def receptive_field(self) -> int:
        return self.spec.receptive_field

    def check_input(self, x: torch.Tensor) -> None:
        name = getattr(self, "default_cfg", {}).get("name", type(self).__name__)
        if x.dtype.is_floating_point:
            if self.spec.input_mode != "one_hot" or x.ndim != 3 or x.shape[1] != self.in_channels:
                raise ValueError(f"{name} expects codes (B, T) int64" + (
                    f" or one-hot (B, {self.in_channels}, T) float" if self.spec.input_mode == "one_hot" else "")
                    + f", got {x.dtype} of shape {tuple(x.shape)}")
        elif x.ndim != 2 or x.dtype == torch.bool:
            raise ValueError(f"{name} expects codes (B, T) of an integer dtype, got shape {tuple(x.shape)}")
        elif x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.in_channels):
            raise ValueError(f"{name}: codes must lie in [0, {self.in_channels}), got [{int(x.min())}, {int(x.max())}]")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) or one-hot (B, Q, T) -> (B, residual_channels, T)."""
        if self.spec.input_mode == "embedding":
            return self.stem(x).transpose(1, 2)
        if not x.dtype.is_floating_point:
            x = F.one_hot(x, self.in_channels).transpose(1, 2).to(self.stem.weight.dtype)
        return self.stem(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) codes or (B, Q, T) one-hot -> (B, num_classes, T) logits of the next sample."""
        self.check_input(x)
        h = self.embed(x)
        skips = 0
        for layer in self.blocks:
            h, skip = layer(h)
            skips = skips + skip
        return self.head(skips)

    # Fast generation.
    def init_queues(self, batch: int) -> list[dict]:
        ref = self.stem.weight.new_zeros(1, self.spec.residual_channels)
        return [layer.new_queue(batch, ref) for layer in self.blocks]

    def step(self, codes: torch.Tensor, queues: list[dict]) -> torch.Tensor:
        """One sample per sequence: codes (B,) -> logits (B, num_classes) of the next sample."""
        h = self.embed(codes[:, None])  # (B, R, 1)
        skips = 0
        for layer, queue in zip(self.blocks, queues):
            h, skip = layer.step(h, queue)
            skips = skips + skip
        return self.head(skips)[:, :, 0]


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverse-CDF sampling from softmax(logits / temperature): (B, Q) -> (B,) int64. One uniform
    draw per sample, so paths whose logits agree draw the same samples."""
    probs = torch.softmax(logits.double() / temperature, -1)
    u = torch.rand(logits.shape[0], 1, generator=generator, dtype=torch.float64, device=logits.device)
    cdf = probs.cumsum(-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_max(logits.shape[-1] - 1)[:, 0]


@torch.no_grad()
def generate(model: WaveNet, num_samples: int, prime: torch.Tensor | None = None, *, batch_size: int = 1,
             temperature: float = 1.0, generator: torch.Generator | None = None,
             method: str = "cached") -> torch.Tensor:
    """Sample ``num_samples`` codes after ``prime``.

    Args:
        model: a WaveNet (put in eval mode by the caller if it matters; WaveNet has no dropout).
        num_samples: codes to generate.
        prime: (B, T0) codes to continue; None starts every sequence from the code of zero
            amplitude (``in_channels // 2``, mu-law's 0).
        batch_size: sequences when ``prime`` is None.
        temperature: softmax temperature (1: the model's distribution).
        generator: the random source; the same generator state gives the same samples on both methods.
        method: ``"cached"`` (Paine et al.'s queues: one kernel application per layer per sample)
            or ``"naive"`` (the whole network over the last receptive field, every sample).

    Returns:
        (B, num_samples) int64 codes (the prime not included).
    """
    if method not in ("cached", "naive"):
        raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = next(model.parameters()).device
    if prime is None:
        prime = torch.full((batch_size, 1), model.in_channels // 2, dtype=torch.int64, device=device)
    if prime.ndim != 2 or prime.shape[1] < 1:
        raise ValueError(f"prime must be codes (B, T0) with T0 >= 1, got shape {tuple(prime.shape)}")
    prime = prime.to(device)
    out = []
    if method == "cached":
        queues = model.init_queues(prime.shape[0])
        for t in range(prime.shape[1]):
            logits = model.step(prime[:, t], queues)
        for _ in range(num_samples):
            code = _sample(logits, temperature, generator)
            out.append(code)
            logits = model.step(code, queues)
    else:
        context = prime
        rf = model.receptive_field
        for _ in range(num_samples):
            logits = model(context[:, -rf:])[:, :, -1]
            code = _sample(logits, temperature, generator)
            out.append(code)
            context = torch.cat([context, code[:, None]], 1)
    return torch.stack(out, 1) if out else prime.new_zeros(prime.shape[0], 0)


def time_generation(model: WaveNet, num_samples: int, method: str = "cached", batch_size: int = 1,
                    seed: int = 0) -> dict[str, float]:
    """Wall-clock time of :func:`generate` (for the benchmarks, never for asserts): seconds and
    samples per second per sequence."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    start = time.perf_counter()
    generate(model, num_samples, batch_size=batch_size, generator=generator, method=method)
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples_per_second": num_samples / seconds if seconds > 0 else math.inf}


_PAPER = "van den Oord et al. WaveNet: A Generative Model for Raw Audio. arXiv:1609.03499, 2016"

register("wavenet", WaveNet, WaveNetSpec(), family="wavenet", paper=_PAPER, year=2016, task="generate",
         in_channels=256, num_classes=256, input_size=16_000,  # one second at the paper's 16 kHz (§3.1)
         mean=(0.0,), std=(1.0,), spatial_dims=(1,),
         extra={"tiny": {"blocks": 2, "layers_per_block": 3, "residual_channels": 4, "dilation_channels": 4,
                         "skip_channels": 8},
                "input": "mu-law codes (B, T) int64 or one-hot (B, 256, T); output (B, 256, T) logits of sample t + 1"})

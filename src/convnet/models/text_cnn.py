"""Kim's sentence CNN: Y. Kim, "Convolutional Neural Networks for Sentence Classification",
EMNLP 2014 (arXiv:1408.5882), §2 and Figure 1.

A sentence of n words is an n x k matrix of word vectors (k = 300, word2vec's size). Filters of
window h span h words and the whole vector (an h x k kernel: a 1-D convolution over words with
the vector's k entries as channels); windows 3, 4 and 5 with 100 feature maps each (§3.1), ReLU,
max-over-time pooling (one feature per map), dropout 0.5 on the 300 pooled features, and a
softmax layer whose weight vectors are rescaled to an l2 norm of 3 whenever a gradient step makes
them longer (§2.1, "constraining l2-norms of the weight vectors").

The four variants of §3.2 differ in the embedding only:
- ``kim_cnn_rand``: every word vector random (U[-0.25, 0.25]) and trained;
- ``kim_cnn_static``: pretrained vectors, kept frozen (its trainable count excludes them);
- ``kim_cnn_non_static``: pretrained vectors, fine-tuned;
- ``kim_cnn_multichannel``: two channels of vectors, both initialised from the pretrained ones,
  one frozen and one fine-tuned; "each filter is applied to both channels and the results are
  added", i.e. one convolution over the two channels' 2k entries.

Pretrained vectors are loaded after construction with :meth:`KimCNN.load_embeddings` (a matrix
from ``convnet.data.text.embedding_matrix``: known words from word2vec/GloVe, unknown ones
U[-0.25, 0.25] as Kim did, padding zeros); until then static and non-static models start from
that random initialisation.

Conventions (for the registry and the tasks):
- input: token ids (B, L) int64, 0 the padding index (``convnet.data.text.encode``);
  sentences may be padded anywhere (usually after the end);
- ``in_channels`` is the number of embedding channels of §2.1: 1, or 2 for multichannel (the
  variant's default; any other value is refused); ``spatial_dims`` is 1 (words);
- ``vocab_size`` and ``embed_dim`` are spec fields (``create_model("kim_cnn_rand", num_classes=2,
  vocab_size=len(vocab), embed_dim=300)``); the default vocabulary is MR's 18,765 words
  (Table 1), the size the registry counts parameters at;
- ``forward_features`` gives (B, 300, L + 4) ReLU maps (every window's map padded to the
  longest); windows that hold no word (only padding) are set to 0, which is exact for the
  max-over-time: the maps are non-negative after ReLU, so a 0 never exceeds the maximum over the
  real windows, and a sentence of padding only pools to 0;
- after every optimiser step the trainer must call :meth:`KimCNN.apply_constraints` (the
  max-norm of §2.1); it is a no-op with ``max_norm=0``.

Convolutions are "wide" over a sentence padded with h - 1 zero vectors on each side, as Kim's
code pads every sentence (``process_data.py``/``conv_net_sentence.py``: ``pad = filter_h - 1``),
so short sentences and words at the edges meet every filter position.
Initialisation follows Kim's code for ReLU networks (``conv_net_classes.py``): filters
U[-0.01, 0.01], zero biases, and a softmax layer starting at zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ._base import ClassifierHead, FeatureInfo
from ._registry import register

# Channel kinds of each variant (§3.2): "tuned" vectors are trained, "frozen" ones are not.
EMBEDDING_MODES: dict[str, tuple[str, ...]] = {
    "rand": ("tuned",),
    "static": ("frozen",),
    "non_static": ("tuned",),
    "multichannel": ("frozen", "tuned"),
}


@dataclass(frozen=True)
class KimCNNSpec:
    """One row of Kim's Table 2 (§3.1 hyperparameters)."""

    mode: str = "rand"  # rand, static, non_static, multichannel (EMBEDDING_MODES)
    vocab_size: int = 18_765  # rows of the embedding, padding and unknown included (MR's |V|, Table 1)
    embed_dim: int = 300  # k: word2vec's vector size
    windows: tuple[int, ...] = (3, 4, 5)  # filter windows h
    maps: int = 100  # feature maps per window
    max_norm: float = 3.0  # s: l2 bound of the softmax weight vectors (0: none)
    padding_idx: int = 0


class KimCNN(nn.Module):
    """Kim's CNN: ``embeddings`` (one per channel), ``convs`` (one per window), ``head``
    (max-over-time pooling, dropout, linear ``fc``)."""

    def __init__(self, spec: KimCNNSpec = KimCNNSpec(), spatial_dims: int = 1, in_channels: int = 1,
                 num_classes: int = 2, drop_rate: float = 0.5):
        super().__init__()
        if spec.mode not in EMBEDDING_MODES:
            raise ValueError(f"mode must be one of {sorted(EMBEDDING_MODES)}, got {spec.mode!r}")
        kinds = EMBEDDING_MODES[spec.mode]
        if spatial_dims != 1:
            raise ValueError(f"Kim's CNN convolves over words: spatial_dims must be 1, got {spatial_dims}")
        if in_channels != len(kinds):
            raise ValueError(f"kim_cnn ({spec.mode}) has {len(kinds)} embedding channel(s); in_channels must be "
                             f"{len(kinds)}, got {in_channels}")
        if not 0 <= spec.padding_idx < spec.vocab_size or spec.vocab_size < 2:
            raise ValueError(f"vocab_size ({spec.vocab_size}) must exceed padding_idx ({spec.padding_idx}) and 1")
        if not spec.windows or min(spec.windows) < 1 or spec.maps < 1:
            raise ValueError(f"windows must be positive and maps >= 1, got {spec.windows} and {spec.maps}")
        self.spec = spec
        self.spatial_dims = 1
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.embeddings = nn.ModuleList()
        for kind in kinds:
            emb = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=spec.padding_idx)
            emb.weight.requires_grad_(kind == "tuned")
            self.embeddings.append(emb)
        width = spec.embed_dim * len(kinds)
        # An h x k filter over every channel = a 1-D convolution of window h over their k * channels entries.
        self.convs = nn.ModuleList(L.conv(1, width, spec.maps, h, padding=0) for h in spec.windows)
        self.longest = max(spec.windows)
        channels = spec.maps * len(spec.windows)
        self.feature_info = [FeatureInfo(channels, 1, "convs")]
        self.head = ClassifierHead(channels, num_classes, pool_type="max", drop_rate=drop_rate)
        self.cam_layer = None
        self._init_weights()

    def _init_weights(self) -> None:
        for emb in self.embeddings:
            self._reset_embedding(emb)
        for conv in self.convs:
            nn.init.uniform_(conv.weight, -0.01, 0.01)
            nn.init.zeros_(conv.bias)
        self._zero_classifier()

    def _reset_embedding(self, emb: nn.Embedding) -> None:
        # Kim's add_unknown_words: U[-0.25, 0.25], "so the unknown vectors have (approximately)
        # the same variance as pre-trained ones"; the padding row is zero.
        with torch.no_grad():
            emb.weight.uniform_(-0.25, 0.25)
            emb.weight[self.spec.padding_idx].zero_()

    def _zero_classifier(self) -> None:
        if isinstance(self.head.fc, nn.Linear):
            nn.init.zeros_(self.head.fc.weight)
            nn.init.zeros_(self.head.fc.bias)

    def load_embeddings(self, vectors: torch.Tensor) -> None:
        """Copy pretrained vectors (vocab_size, embed_dim) into every channel (§3.2: both channels
        of the multichannel model start from word2vec). The padding row is set to zero.

        Raises:
            ValueError: the matrix's shape is not (vocab_size, embed_dim), or it holds NaN/inf.
        """
        expected = (self.spec.vocab_size, self.spec.embed_dim)
        if tuple(vectors.shape) != expected:
            raise ValueError(f"embedding matrix must be {expected} (vocab_size, embed_dim), got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("embedding matrix holds NaN or infinite values")
        with torch.no_grad():
            for emb in self.embeddings:
                emb.weight.copy_(vectors)
                emb.weight[self.spec.padding_idx].zero_()

    def check_input(self, x: torch.Tensor) -> None:
        """Token ids (B, L) int64 in [0, vocab_size); raise a ValueError naming what is wrong."""
        name = getattr(self, "default_cfg", {}).get("name", type(self).__name__)
        if x.ndim != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"{name} expects token ids (B, L) of an integer dtype, got {x.dtype} "
                             f"of shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.spec.vocab_size):
            raise ValueError(f"{name}: token ids must lie in [0, {self.spec.vocab_size}), "
                             f"got [{int(x.min())}, {int(x.max())}]")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, maps * windows, L + max(windows) - 1) ReLU maps, 0 at windows of padding only."""
        mask = (x != self.spec.padding_idx).float()[:, None]  # (B, 1, L)
        emb = torch.cat([e(x) for e in self.embeddings], -1).transpose(1, 2)  # (B, k * channels, L)
        maps = []
        for h, conv in zip(self.spec.windows, self.convs):
            # Wide convolution: h - 1 zero vectors before, and after so every map has L + longest - 1 positions.
            pad = (h - 1, self.longest - 1)
            out = F.relu(conv(F.pad(emb, pad)))
            # A window holds a word where the padded mask has a 1 among its h entries.
            holds_word = F.max_pool1d(F.pad(mask, pad), h, 1)
            maps.append(out * holds_word)
        return torch.cat(maps, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)
        self.num_classes = num_classes
        self._zero_classifier()

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Kim §2.1: rescale every softmax weight vector (a row of ``head.fc.weight``, one per
        class) whose l2 norm exceeds ``max_norm`` back to that norm. Call after each optimiser step."""
        fc = self.head.fc
        if self.spec.max_norm <= 0 or not isinstance(fc, nn.Linear):
            return
        norms = fc.weight.norm(dim=1, keepdim=True)
        fc.weight.mul_(torch.where(norms > self.spec.max_norm, self.spec.max_norm / norms, torch.ones_like(norms)))


_PAPER = "Kim. Convolutional Neural Networks for Sentence Classification. EMNLP 2014"
_TINY = {"vocab_size": 50, "embed_dim": 8, "maps": 4}

# The variants of §3.2, one per row.
KIM_SPECS = {
    "kim_cnn_rand": KimCNNSpec(mode="rand"),  # all words randomly initialised, trained
    "kim_cnn_static": KimCNNSpec(mode="static"),  # word2vec vectors kept static
    "kim_cnn_non_static": KimCNNSpec(mode="non_static"),  # word2vec vectors fine-tuned
    "kim_cnn_multichannel": KimCNNSpec(mode="multichannel"),  # one static and one fine-tuned channel
}

for _name, _spec in KIM_SPECS.items():
    # No published parameter count (it depends on the vocabulary); derived in tests/test_text.py.
    register(_name, KimCNN, _spec, family="kim_cnn", paper=_PAPER, year=2014, task="classify_text",
             in_channels=len(EMBEDDING_MODES[_spec.mode]), num_classes=2, mean=(0.0,), std=(1.0,),
             input_size=20,  # words: MR's average sentence length (Table 1)
             spatial_dims=(1,), extra={"tiny": _TINY, "input": "token ids (B, L) int64, 0 = padding",
                                       "per_step": "apply_constraints"})

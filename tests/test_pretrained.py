"""Pretrained weights by name: the table against its sources, and downloads that are verified,
cached, bounded, mirrored and shared between processes, against a loopback HTTP server (no test
uses the internet)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from convnet import create_model, load_pretrained
from convnet.cli import main as cli_main
from convnet.data.transforms import Preprocess
from convnet.models import get_entry, list_models
from convnet.weights import KEYMAPS, DownloadError, hub
from convnet.weights import checkpoint as checkpoint_module
from convnet.weights.pretrained import (
    WEIGHTS,
    PretrainedWeights,
    WeightsPreprocess,
    get_weights,
    init_preprocess,
    list_pretrained,
    register_weights,
)
from convnet.weights.pretrained_table import _FULL_SHA256

from oracle import timm, torchvision_models

TINY = get_entry("resnet18").extra["tiny"]
PRE = WeightsPreprocess(resize=36, crop=(32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bicubic")


# ----------------------------------------------------------------------------- a loopback server
class Server:
    """http.server in a thread. ``routes[path]`` is the body, or a dict with ``body`` and a
    ``mode``: "ok", "truncate" (announce the whole length, send half, hang up), "status" (answer
    ``status``), "hold" (wait for ``release`` before sending), "redirect" (302 to ``to`` with
    ``headers``)."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                route = route if isinstance(route, dict) else {"body": route}
                mode, body = route.get("mode", "ok"), route.get("body", b"")
                if mode == "status":
                    self.send_error(route["status"])
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", route["to"])
                    for k, v in route.get("headers", {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "hold":
                    server.release.wait(30)
                if mode == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(hub.ENV_MIRROR, raising=False)
    monkeypatch.delenv(hub.ENV_OFFLINE, raising=False)
    return tmp_path / "cache" / "weights"


# ----------------------------------------------------------------------------- a tiny published file
def _torchvision_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """convnet's ResNet keys -> torchvision's: the inverse of keymaps/resnet.py's rules."""
    def layer(m: re.Match) -> str:
        return f"layer{int(m[1]) + 1}.{m[2]}"

    rules = [(r"stem\.conv\.conv\.(.*)", lambda m: f"conv1.{m[1]}"),
             (r"stem\.conv\.norm\.(.*)", lambda m: f"bn1.{m[1]}"),
             (r"stages\.(\d)\.blocks\.(\d+)\.conv(\d)\.conv\.(.*)", lambda m: f"{layer(m)}.conv{m[3]}.{m[4]}"),
             (r"stages\.(\d)\.blocks\.(\d+)\.conv(\d)\.norm\.(.*)", lambda m: f"{layer(m)}.bn{m[3]}.{m[4]}"),
             (r"stages\.(\d)\.blocks\.(\d+)\.shortcut\.conv\.(.*)", lambda m: f"{layer(m)}.downsample.0.{m[3]}"),
             (r"stages\.(\d)\.blocks\.(\d+)\.shortcut\.norm\.(.*)", lambda m: f"{layer(m)}.downsample.1.{m[3]}"),
             (r"head\.fc\.(.*)", lambda m: f"fc.{m[1]}")]
    out = {}
    for key, value in state.items():
        renamed = [rename(m) for pattern, rename in rules if (m := re.fullmatch(pattern, key))]
        assert len(renamed) == 1, f"no inverse rule for {key}"
        out[renamed[0]] = value
    return out


@pytest.fixture
def published(server):
    """A tiny ResNet-18 saved as a torchvision .pth, served by ``server`` and registered as the
    weights ``resnet18.test_loop`` (hash and size known). Yields (entry, its state in convnet's
    layout, the file's bytes)."""
    torch.manual_seed(1)
    source = create_model("resnet18", num_classes=5, **TINY)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(_torchvision_layout(state), buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"resnet18_tiny-{digest[:8]}.pth"
    server.routes[f"/models/{name}"] = data
    entry = register_weights(PretrainedWeights(
        model="resnet18", tag="test_loop", url=f"{server.url}/models/{name}", layout="torchvision.models.resnet",
        preprocess=PRE, num_classes=5, dataset="tiny", metrics={"acc@1": 1.0}, source="tests", sha256=digest,
        size=len(data), overrides=TINY))
    yield entry, state, data
    WEIGHTS["resnet18"].pop("test_loop", None)


def _register(entry: PretrainedWeights) -> PretrainedWeights:
    WEIGHTS.get(entry.model, {}).pop(entry.tag, None)
    return register_weights(entry)


def _replace(entry: PretrainedWeights, **changes) -> PretrainedWeights:
    fields = {k: getattr(entry, k) for k in PretrainedWeights.__dataclass_fields__}
    return _register(PretrainedWeights(**{**fields, **changes}))


def _files(directory: Path) -> list[str]:
    """Files a download left in the cache (its lock file aside)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()
                  and not p.name.endswith(".lock"))


def _by_url(cache: Path, url: str) -> Path:
    """Where a file fetched by its URL alone is cached: ``url/HOST/PATH``."""
    return cache / "url" / url.split("://", 1)[1]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a if not k.startswith(skip))


# ----------------------------------------------------------------------------- download and load
def test_download_verify_load_and_carry_the_preprocessing(published, server, cache):
    entry, state, data = published
    model = create_model("resnet18", pretrained="test_loop")
    assert _same(model.state_dict(), state)
    assert model.default_cfg["preprocess"] == PRE.to_dict()
    assert model.default_cfg["mean"] == PRE.mean and model.default_cfg["std"] == PRE.std
    assert model.default_cfg["input_size"] == (3, 32, 32)
    assert model.default_cfg["pretrained"]["name"] == "resnet18.test_loop"
    assert model.model_config["num_classes"] == 5 and model.model_config["overrides"] == json.loads(json.dumps(TINY))
    path = cache / entry.file
    assert path.read_bytes() == data and _files(cache) == [f".{entry.file}.verified", entry.file]
    # The cache serves the second request: the server sees one download in all.
    again = create_model("resnet18", pretrained="test_loop")
    assert _same(again.state_dict(), state) and sum(server.hits.values()) == 1


def test_other_classes_keep_a_new_head(published, cache):
    entry, state, _ = published
    torch.manual_seed(5)
    fresh_head = create_model("resnet18", num_classes=3, **TINY).state_dict()["head.fc.weight"]
    torch.manual_seed(5)
    model = create_model("resnet18", pretrained="test_loop", num_classes=3)
    assert _same(model.state_dict(), state, skip=("head.",))
    assert torch.equal(model.state_dict()["head.fc.weight"], fresh_head)
    with pytest.raises(ValueError, match="3-D weights|2-D weights"):
        create_model("resnet18", pretrained="test_loop", spatial_dims=3)
    with pytest.raises(ValueError, match="expect 3 input channels, got in_channels=1"):
        create_model("resnet18", pretrained="test_loop", in_channels=1)
    with pytest.raises(ValueError, match="resnet18 has no pretrained weights 'nope'; tags: .*tv_in1k"):
        create_model("resnet18", pretrained="nope")
    with pytest.raises(ValueError, match="no pretrained weights for 'lenet5'"):
        create_model("lenet5", pretrained=True)


def test_load_pretrained_by_tag_url_and_path(published, server, cache, tmp_path):
    entry, state, data = published
    # transfer.init = "pretrained:TAG": the trainer's call, a new head for other classes.
    model = create_model("resnet18", num_classes=3, **TINY)
    head = model.state_dict()["head.fc.weight"].clone()
    load_pretrained(model, "pretrained:test_loop", exclude=("head.",))
    assert _same(model.state_dict(), state, skip=("head.",)) and torch.equal(model.head.fc.weight, head)
    # Weights that need another build or other input channels say so.
    with pytest.raises(ValueError, match=r"resnet18\.test_loop need a model built with .*model\.overrides\.widths="):
        load_pretrained(create_model("resnet18", num_classes=5), "pretrained:test_loop")
    with pytest.raises(ValueError, match="take 3 input channels, the model has 1 .*data.channels=3"):
        load_pretrained(create_model("resnet18", in_channels=1, **TINY), "pretrained:test_loop", exclude=("head.",))
    # Any URL, with a hash or its prefix; cached under the URL (url/HOST/PATH), apart from the table's.
    for sha in (entry.sha256, entry.sha256[:8], None):
        model = load_pretrained(create_model("resnet18", num_classes=5, **TINY), entry.url, sha256=sha)
        assert _same(model.state_dict(), state)
    assert _by_url(cache, entry.url).read_bytes() == data
    # A URL without a hash, from a server that publishes none: loaded, with a warning that says so.
    server.routes["/other/tiny.pth"] = data
    with pytest.warns(UserWarning, match=rf"no SHA-256 is known for {re.escape(server.url)}/other/tiny\.pth"):
        load_pretrained(create_model("resnet18", num_classes=5, **TINY), f"{server.url}/other/tiny.pth")
    # A path with a hash: checked before it is read.
    path = tmp_path / "w.pth"
    path.write_bytes(data)
    load_pretrained(create_model("resnet18", num_classes=5, **TINY), path, sha256=entry.sha256)
    with pytest.raises(ValueError, match=f"{path}: SHA-256 {entry.sha256} does not match the expected 0+"):
        load_pretrained(create_model("resnet18", num_classes=5, **TINY), path, sha256="0" * 64)
    with pytest.raises(ValueError, match="8 to 64 hex digits"):
        load_pretrained(create_model("resnet18", num_classes=5, **TINY), path, sha256="xyz")


def test_wrong_hash_is_refused_before_reading_and_caches_nothing(published, cache, monkeypatch):
    entry, _, data = published
    def must_not_unpickle(*args, **kwargs):
        raise AssertionError("a file with a wrong hash was deserialised")

    monkeypatch.setattr(checkpoint_module, "_torch_load", must_not_unpickle)
    for wrong in ("0" * 64, "deadbeef"):
        _replace(entry, sha256=wrong)
        with pytest.raises(DownloadError, match=rf"resnet18\.test_loop: {re.escape(entry.url)} sent a file with "
                                                rf"SHA-256 {entry.sha256}, expected {wrong}; refused"):
            create_model("resnet18", pretrained="test_loop")
        assert _files(cache) == []


def test_truncated_transfer_leaves_nothing_and_the_next_attempt_restarts(published, server, cache):
    entry, state, data = published
    route = f"/models/{entry.file}"
    server.routes[route] = {"body": data, "mode": "truncate"}
    with pytest.raises(DownloadError, match=rf"resnet18\.test_loop: the transfer from {re.escape(entry.url)} "
                                            r"(broke off|ended) after"):
        create_model("resnet18", pretrained="test_loop")
    assert _files(cache) == []
    server.routes[route] = data
    assert _same(create_model("resnet18", pretrained="test_loop").state_dict(), state)
    assert server.hits[route] == 2


def test_server_errors_name_the_url(published, server, cache):
    entry, _, _ = published
    server.routes[f"/models/{entry.file}"] = {"mode": "status", "status": 500}
    with pytest.raises(DownloadError, match=rf"the server answered 500 .* for {re.escape(entry.url)}$"):
        create_model("resnet18", pretrained="test_loop")
    missing = _replace(entry, url=f"{server.url}/models/gone-{entry.sha256[:8]}.pth")
    with pytest.raises(DownloadError, match=rf"the server answered 404 Not Found for {re.escape(missing.url)}"):
        create_model("resnet18", pretrained="test_loop")
    _replace(entry, url="http://127.0.0.1:9/x.pth")
    with pytest.raises(DownloadError, match=r"cannot reach http://127\.0\.0\.1:9/x\.pth .*CONVNET_WEIGHTS_MIRROR"):
        create_model("resnet18", pretrained="test_loop")
    assert _files(cache) == []


def test_a_download_larger_than_its_size_is_refused(published, server, cache):
    entry, _, data = published
    _replace(entry, size=len(data) - 1)
    with pytest.raises(DownloadError, match=f"announces {len(data):,} bytes, expected {len(data) - 1:,}"):
        create_model("resnet18", pretrained="test_loop")
    _replace(entry, size=None, max_size=100)
    with pytest.raises(DownloadError, match="expected at most 100"):
        create_model("resnet18", pretrained="test_loop")
    assert _files(cache) == []


def test_offline_without_the_file_says_what_to_put_where(published, server, cache, monkeypatch):
    entry, _, _ = published
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    with pytest.raises(FileNotFoundError) as e:
        create_model("resnet18", pretrained="test_loop")
    message = str(e.value)
    assert f"CONVNET_OFFLINE=1 and resnet18.test_loop is not in the cache: place {entry.file}" in message
    assert entry.url in message and str(cache / entry.file) in message
    assert server.hits == {}


def test_offline_with_the_file_in_the_cache(published, server, cache, monkeypatch):
    entry, state, data = published
    (cache / entry.file).parent.mkdir(parents=True)
    (cache / entry.file).write_bytes(data)  # filled on another machine, copied here
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    assert _same(create_model("resnet18", pretrained="test_loop").state_dict(), state)
    assert server.hits == {}
    # A file placed by hand is checked like a download: a wrong one is named and not loaded.
    time.sleep(0.01)
    (cache / entry.file).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match=rf"{re.escape(str(cache / entry.file))}: cached resnet18\.test_loop has "
                                         rf"SHA-256 [0-9a-f]{{64}}, expected {entry.sha256}; delete it"):
        create_model("resnet18", pretrained="test_loop")


def test_mirror_serves_every_file_under_its_published_name(published, server, cache, monkeypatch):
    entry, state, data = published
    _replace(entry, url=f"http://127.0.0.1:9/models/{entry.file}")  # the published site is unreachable
    server.routes[f"/mirror/{entry.file}"] = data
    monkeypatch.setenv(hub.ENV_MIRROR, f"{server.url}/mirror/")
    assert _same(create_model("resnet18", pretrained="test_loop").state_dict(), state)
    assert server.hits == {f"/mirror/{entry.file}": 1}


def test_hub_files_are_checked_against_the_published_sha256(published, server, cache):
    """A Hub download answers with a redirect whose X-Linked-Etag is the file's SHA-256."""
    entry, state, data = published
    hub_name = "timm/tiny_resnet.test/model.pth"
    server.routes[f"/cdn/{hub_name}"] = data
    server.routes["/timm/tiny_resnet.test/resolve/main/model.pth"] = {
        "mode": "redirect", "to": f"{server.url}/cdn/{hub_name}", "headers": {"X-Linked-Etag": '"' + "1" * 64 + '"'}}
    _replace(entry, url=f"{server.url}/timm/tiny_resnet.test/resolve/main/model.pth", sha256="", size=None,
             file_name=hub_name)
    with pytest.raises(DownloadError, match="expected 1111"):
        create_model("resnet18", pretrained="test_loop")
    assert _files(cache) == []
    server.routes["/timm/tiny_resnet.test/resolve/main/model.pth"]["headers"] = {
        "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))}
    assert _same(create_model("resnet18", pretrained="test_loop").state_dict(), state)
    assert (cache / hub_name).read_bytes() == data


def test_two_downloaders_of_one_file_share_one_download(published, server, cache):
    """Two threads (each its own lock descriptor, as two processes have): one downloads while
    the server holds the transfer, the other waits for the lock and takes the finished file."""
    entry, _, data = published
    server.routes[f"/models/{entry.file}"] = {"body": data, "mode": "hold"}
    results, errors = [], []

    def fetch():
        try:
            results.append(hub.fetch(entry.url, sha256=entry.sha256, progress=False))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    server.release.set()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [_by_url(cache, entry.url)] * 2
    assert server.hits == {f"/models/{entry.file}": 1}
    assert _by_url(cache, entry.url).read_bytes() == data


_FETCH = """
import sys
from convnet.weights import hub
print("ready", flush=True)
print(hub.fetch(sys.argv[1], sha256=sys.argv[2], progress=False), flush=True)
"""


@pytest.mark.slow  # two interpreters importing torch: about 25 s on 2 busy cores
def test_two_processes_downloading_one_file_share_one_download(published, server, cache):
    entry, _, data = published
    server.routes[f"/models/{entry.file}"] = {"body": data, "mode": "hold"}
    env = {**os.environ, hub.ENV_CACHE: str(cache.parent), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH, entry.url, entry.sha256], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # both are in fetch now: one downloads (held by the server), one waits for its lock
        server.release.set()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    target = _by_url(cache, entry.url)
    assert paths == {str(target)} and target.read_bytes() == data
    assert server.hits == {f"/models/{entry.file}": 1}
    assert _files(cache) == [str(p.relative_to(cache)) for p in (target.with_name(f".{entry.file}.verified"), target)]


# ----------------------------------------------------------------------------- the table
def test_every_family_with_a_key_map_has_weights():
    families = {f for k in KEYMAPS for f in k.families}
    with_weights = {get_entry(m).family for m in WEIGHTS if m in set(list_models())}
    missing = sorted(f for f in families if list_models(family=f) and f not in with_weights)
    assert missing == [], f"families with a key map but no weights: {missing}"
    assert len(list_pretrained()) >= 90


def test_every_row_names_a_key_map_of_its_family_and_one_default():
    registered = set(list_models())
    for model, tags in WEIGHTS.items():
        assert sum(e.default for e in tags.values()) == 1, model
        for e in tags.values():
            if model not in registered:
                continue
            keymap = [k for k in KEYMAPS if k.source == e.layout]
            assert keymap and get_entry(model).family in keymap[0].families, e.name


def test_torchvision_rows_equal_torchvision_metadata():
    """URL, parameters, accuracy, preprocessing and the default, against the Weights enums."""
    tvm = torchvision_models()
    checked = 0
    for model, tags in WEIGHTS.items():
        for e in tags.values():
            if not e.source.startswith("torchvision"):
                continue
            enum_name, member = e.source.split()[-1].split(".")
            enum = tvm.get_model_weights(model)
            assert enum.__name__ == enum_name, e.name
            w = enum[member]
            assert e.url == w.url and e.num_params == w.meta["num_params"], e.name
            dataset, metrics = next(iter(w.meta["_metrics"].items()))
            assert e.dataset == dataset and dict(e.metrics) == metrics and e.num_classes == len(w.meta["categories"])
            assert e.default == (enum.DEFAULT == w), e.name
            t = w.transforms()
            pre = e.preprocess
            if hasattr(t, "crop_size"):
                assert list(pre.crop) == (t.crop_size * 2 if len(t.crop_size) == 1 else t.crop_size), e.name
            if getattr(t, "resize_size", None) is not None:
                size = t.resize_size
                assert (pre.resize == size[0]) if len(size) == 1 else (list(pre.resize) == size), e.name
                assert pre.interpolation == t.interpolation.value
            if hasattr(t, "mean"):
                if model in ("googlenet", "inception_v3"):  # transform_input, see pretrained_table.py
                    assert pre.mean == pre.std == (0.5, 0.5, 0.5)
                else:
                    assert list(pre.mean) == list(t.mean) and list(pre.std) == list(t.std), e.name
            else:
                assert pre.mean is None and pre.resize is None, e.name
            mib = w.meta["_file_size"]  # MiB, rounded to 3 decimals
            if e.size is not None:  # a recorded size must round to torchvision's
                assert abs(e.size / 2**20 - mib) <= 0.0005, e.name
            else:
                assert e.max_size == math.ceil((mib + 0.0005) * 2**20), e.name
            checked += 1
    assert checked >= 70


def test_hashes_are_whole_digests_or_the_file_names_prefix():
    for tags in WEIGHTS.values():
        for e in tags.values():
            prefix = hub.name_hash_prefix(e.file)
            if e.source.startswith("torchvision"):
                assert prefix and e.sha256.startswith(prefix), e.name
                assert e.hash_kind == ("sha256" if e.file in _FULL_SHA256 else "prefix"), e.name
            else:
                assert e.sha256 == "", e.name  # timm publishes none: the Hub's X-Linked-Etag checks them
                assert e.hash_kind == ("hub" if e.url.startswith("https://huggingface.co/") else "none"), e.name
    for file, (digest, size) in _FULL_SHA256.items():
        assert re.fullmatch(r"[0-9a-f]{64}", digest) and digest.startswith(hub.name_hash_prefix(file)), file


def test_timm_rows_follow_timm_pretrained_cfgs():
    tm = timm()
    for tags in WEIGHTS.values():
        for e in tags.values():
            if not e.source.startswith("timm"):
                continue
            name = e.source.split()[-1]
            cfg = tm.models.get_pretrained_cfg(name).to_dict()
            size = cfg["input_size"][-1]
            pre = e.preprocess
            assert pre.crop == (size, size) and pre.resize == math.floor(size / cfg["crop_pct"]), e.name
            assert pre.interpolation == cfg["interpolation"] and list(pre.mean) == list(cfg["mean"]), e.name
            assert list(pre.std) == list(cfg["std"]) and e.license == cfg["license"], e.name
            if cfg.get("hf_hub_id"):
                assert e.url == f"https://huggingface.co/timm/{name}/resolve/main/model.safetensors"
                assert e.file == f"timm/{name}/model.safetensors"
            else:
                assert e.url == cfg["url"]


def _source_state(e: PretrainedWeights) -> dict[str, torch.Tensor]:
    """The source library's architecture of ``e``, on the meta device: its keys and shapes."""
    with torch.device("meta"):
        if e.source.startswith("timm"):
            return timm().create_model(e.source.split()[-1].split(".")[0], pretrained=False).state_dict()
        tvm = torchvision_models()
        kwargs = {"weights": None, "num_classes": e.num_classes}
        module = tvm.get_model_weights(e.model).__module__
        if ".detection." in module or ".segmentation." in module:
            kwargs["weights_backbone"] = None
        if ".segmentation." in module and not e.model.startswith("lraspp"):
            kwargs["aux_loss"] = True  # the COCO_WITH_VOC_LABELS files carry the auxiliary head
        if e.model in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = False  # the values do not matter on the meta device
        if "img_size" in e.overrides:
            kwargs["image_size"] = e.overrides["img_size"]
        return tvm.get_model(e.model, **kwargs).state_dict()


def _fits(e: PretrainedWeights) -> None:
    from convnet.weights.checkpoint import _describe_mismatch

    with torch.device("meta"):
        model = create_model(e.model, num_classes=e.num_classes, **e.overrides)
    keymap = next(k for k in KEYMAPS if k.source == e.layout)
    converted = keymap.apply(_source_state(e), model)
    problem = _describe_mismatch(model.state_dict(), converted, e.name)
    assert problem is None, problem


@pytest.mark.parametrize("name", ["resnet18.tv_in1k", "googlenet.tv_in1k", "vit_s_16.timm_augreg_in21k_ft_in1k",
                                  "mobilenet_v1.timm_ra4_e3600_r224_in1k"])
def test_a_row_converts_from_its_source_layout(name):
    _fits(get_weights(*name.split(".")))


@pytest.mark.slow
def test_every_row_converts_from_its_source_layout():
    """Every row's source architecture (torchvision or timm, on the meta device), renamed by the
    row's key map, fits the convnet model the row loads into: names, shapes, dtypes."""
    registered = set(list_models())
    for tags in WEIGHTS.values():
        for e in tags.values():
            if e.model in registered and e.source.split()[0] in ("torchvision", "timm"):
                _fits(e)


# ----------------------------------------------------------------------------- preprocessing
def test_weights_preprocessing_equals_torchvision_transforms():
    tvm = torchvision_models()
    g = torch.Generator().manual_seed(0)
    # A smooth image: bicubic then stays in [0, 1], where clamping (as PIL's 8-bit images) is a no-op.
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(300, 410), mode="bilinear",
                                            align_corners=False)[0]
    for name in ("resnet50.tv2_in1k", "efficientnet_b3.tv_in1k", "inception_v3.tv_in1k"):
        e = get_weights(*name.split("."))
        enum, member = e.source.split()[-1].split(".")
        theirs = getattr(tvm, enum)[member].transforms()(image)
        ours = Preprocess.from_weights(e.preprocess.to_dict()).from_image(image)[0]
        if e.model == "inception_v3":  # torchvision's transform_input turns theirs into ours
            theirs = theirs * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) / 0.5 + (
                torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) - 0.5) / 0.5
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0, msg=name)


def test_preprocess_round_trips_and_old_configs_still_read():
    pre = Preprocess.from_weights(PRE.to_dict())
    assert pre.size == (32, 32) and pre.resize == 36 and pre.interpolation == "bicubic"
    assert Preprocess.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    old = {"channels": 1, "source_size": [8, 8], "size": [32, 32], "content": [20, 20], "mean": [0.1], "std": [0.8]}
    assert Preprocess.from_dict(old).resize is None
    with pytest.raises(ValueError, match="the weights normalise 3 channels .* the data has 1: set data.channels=3"):
        Preprocess.from_weights(PRE.to_dict(), channels=1)
    with pytest.raises(ValueError, match="no crop"):
        Preprocess.from_weights(get_weights("fcn_resnet50").preprocess.to_dict())
    assert Preprocess.from_weights(get_weights("fcn_resnet50").preprocess.to_dict(), size=(64, 64)).size == (64, 64)


def test_init_preprocess_names_the_weights_preprocessing(published):
    assert init_preprocess("resnet18", "pretrained:test_loop") == PRE.to_dict()
    assert init_preprocess("resnet50", "pretrained")["resize"] == 232  # torchvision's DEFAULT is V2
    assert init_preprocess("resnet18", "runs/a") is None and init_preprocess("resnet18", "") is None


def test_trainer_fine_tunes_from_pretrained_weights(published, cache, tmp_path):
    """``convnet train --init pretrained:TAG``: the backbone starts from the file (frozen, it stays)."""
    from PIL import Image

    from convnet.train import TrainConfig, Trainer, parse_overrides

    entry, state, _ = published
    g = torch.Generator().manual_seed(0)
    for c in range(2):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(6):
            pixels = (torch.rand(20, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "imgs" / f"c{c}" / f"{i}.png")
    cfg = TrainConfig()
    parse_overrides(cfg, [f"out={tmp_path / 'run'}", "model.name=resnet18", f"data.name=folder:{tmp_path / 'imgs'}",
                          "transfer.init=pretrained:test_loop", "transfer.freeze=backbone", "epochs=1",
                          "report=false", "data.batch_size=4", "data.test_fraction=0.34", "data.val_fraction=0.0"]
                    + [f"model.overrides.{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}"
                       for k, v in TINY.items()])
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    trained = trainer.model.state_dict()
    assert all(torch.equal(trained[k], state[k]) for k in state if not k.startswith("head."))
    assert not torch.equal(trained["head.fc.bias"], torch.zeros(2))  # the new head did train
    # The run takes the weights' preprocessing (resize, crop, mean, std), saved for predict and serve.
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["preprocess"]
    weights = PRE.to_dict()
    assert saved["mean"] == list(weights["mean"]) and saved["std"] == list(weights["std"])
    assert saved["size"] == list(weights["crop"]) and saved["resize"] == weights["resize"]


# ----------------------------------------------------------------------------- the command line
def test_models_pretrained_lists_the_table(capsys):
    assert cli_main(["models", "resnet50", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "resnet50.tv2_in1k" in out and "resnet50.tv_in1k" in out and "resnet50.timm_a1_in1k" in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "acc@1 80.858" in rows["resnet50.tv2_in1k"] and " sha256 " in rows["resnet50.tv2_in1k"]
    assert " hub " in rows["resnet50.timm_a1_in1k"] and "resize shorter side to 232" in rows["resnet50.tv2_in1k"]
    assert out.splitlines()[2].startswith("resnet50.tv2_in1k *")  # the default is marked
    assert cli_main(["models", "lenet*", "--pretrained"]) == 1

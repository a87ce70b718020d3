"""convnet serve: every endpoint and every refusal, in process (httpx's ASGI transport) on a
tiny digits run trained here, plus the body cap over a real socket (uvicorn in a thread).

What each test pins: the answer equals ``convnet predict``'s for the same file; batched answers
equal unbatched ones; limits answer 413 / 415 / 422 / 503 / 504 with a JSON error and never a
500 or a traceback; a chunked upload stops being read at the cap; a .npy with objects is refused
without unpickling; /metrics is valid Prometheus text whose counts match the requests made.
"""
from __future__ import annotations

import asyncio
import http.client
import io
import json
import re
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette", reason="the 'serve' extra (starlette, uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the in-process test client) is not installed")

from PIL import Image  # noqa: E402

from convnet.serve import ServeSettings, Service, create_app  # noqa: E402
from convnet.serve.batching import MicroBatcher  # noqa: E402
from convnet.serve.limits import parse_multipart  # noqa: E402


# ----------------------------------------------------------------------------- fixtures
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 (modern) run on the bundled digits, a few optimiser steps long, trained once
    per test session (the browser test shares it)."""
    from convnet.train import TrainConfig, Trainer, parse_overrides

    out = tmp_path_factory.getbasetemp() / "serve-digits-run"
    if not (out / "model.safetensors").is_file():
        cfg = parse_overrides(TrainConfig(), [f"out={out}", "model.name=lenet5_modern", "epochs=1", "max_steps=8",
                                              "report=false", "device=cpu", "seed=0"])
        Trainer(cfg, progress=False, overwrite=True).fit()
    return out


def digit_png(index: int = 0, size: int = 64) -> bytes:
    """A test digit of scikit-learn's set as a gray PNG (light ink on dark, as trained)."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] / 16.0 * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return digits_run(tmp_path_factory)


@pytest.fixture(scope="module")
def service(run_dir):
    svc = Service(run_dir, ServeSettings(threads=1))
    yield svc
    svc.close()


class SlowModel(torch.nn.Module):
    """The run's model, ``delay_s`` slower per forward pass (to fill queues and hit timeouts)."""

    def __init__(self, model: torch.nn.Module, delay_s: float):
        super().__init__()
        self.inner, self.delay_s = model, delay_s

    def forward(self, x):
        time.sleep(self.delay_s)
        return self.inner(x)


def call(app, method: str, url: str, **kw) -> httpx.Response:
    return asyncio.run(_call(app, method, url, **kw))


async def _call(app, method: str, url: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.request(method, url, **kw)


def assert_json_error(r: httpx.Response, status: int, *needles: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    for needle in needles:
        assert needle in body["error"], body["error"]
    return body["error"]


def expected_prediction(run_dir: Path, png: bytes, tmp_path: Path) -> dict:
    """What `convnet predict` computes for the same bytes as a file (cli.cmd_predict's steps)."""
    from convnet.train import load_run, run_task

    path = tmp_path / "digit.png"
    path.write_bytes(png)
    model, run_cfg = load_run(run_dir)
    task = run_task(run_cfg)
    batch = task.collate([task.load_input(str(path), run_cfg)])
    with torch.no_grad():
        return task.postprocess(task.forward(model, batch), batch)[0]


# ----------------------------------------------------------------------------- endpoints
def test_healthz_and_info(service):
    app = create_app(None, service=service)
    r = call(app, "GET", "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = call(app, "GET", "/info").json()
    assert info["model"]["name"] == "lenet5_modern" and info["task"]["name"] == "classify"
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["input"]["kind"] == "image" and info["input"]["preprocess"]["size"] == [32, 32]
    assert info["input"]["options"] == ["invert"]
    assert info["model"]["params"] == sum(p.numel() for p in service.model.parameters())
    assert info["limits"]["max_body_bytes"] == 10 * 2**20


def test_predict_multipart_equals_convnet_predict(service, run_dir, tmp_path):
    app = create_app(None, service=service)
    png = digit_png(3)
    r = call(app, "POST", "/predict", files={"file": ("three.png", png, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    want = expected_prediction(run_dir, png, tmp_path)
    top = body["prediction"]["top_k"]
    assert [t["index"] for t in top] == want["classes"]
    np.testing.assert_allclose([t["prob"] for t in top], want["probs"], rtol=1e-5, atol=1e-7)
    assert [t["label"] for t in top] == [str(i) for i in want["classes"]]
    assert body["prediction"]["label"] == top[0]["label"] and body["filename"] == "three.png"
    assert body["task"] == "classify" and body["text"].startswith(f"{top[0]['label']} (")
    assert "cam" not in body


def test_predict_raw_bytes_equals_multipart(service):
    app = create_app(None, service=service)
    png = digit_png(5)
    raw = call(app, "POST", "/predict", content=png, headers={"content-type": "image/png"}).json()
    octet = call(app, "POST", "/predict?filename=five.png", content=png,
                 headers={"content-type": "application/octet-stream"}).json()
    form = call(app, "POST", "/predict", files={"file": ("five.png", png, "image/png")}).json()
    assert raw["prediction"] == form["prediction"] == octet["prediction"]
    assert octet["filename"] == "five.png" and raw["filename"] == "upload"


def test_predict_with_grad_cam(service):
    app = create_app(None, service=service)
    body = call(app, "POST", "/predict?cam=1", files={"file": ("d.png", digit_png(0), "image/png")}).json()
    cam = body["cam"]
    assert cam["layer"] == "features.c3" and cam["class"] == body["prediction"]["index"]
    import base64

    picture = Image.open(io.BytesIO(base64.b64decode(cam["png"])))
    assert picture.format == "PNG" and picture.mode == "RGB" and picture.size == (256, 256)  # 32x32 x 8
    assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 2  # a heat map, not a blank square


def test_a_failed_grad_cam_keeps_the_prediction(service, monkeypatch):
    import convnet.analysis.cam as cam_module

    app = create_app(None, service=service)
    for error, shown, hidden in ((ValueError("layer 'x' is not spatial"), "layer 'x' is not spatial", None),
                                 (RuntimeError("internal detail"), "server log", "internal detail")):
        def failing(*args, error=error, **kw):
            raise error

        monkeypatch.setattr(cam_module, "grad_cam", failing)
        r = call(app, "POST", "/predict?cam=1", files={"file": ("d.png", digit_png(0), "image/png")})
        assert r.status_code == 200 and r.json()["prediction"]["top_k"]
        assert shown in r.json()["cam"]["error"] and (hidden is None or hidden not in r.text)


def test_query_options(service):
    app = create_app(None, service=service)
    png = digit_png(1)
    plain = call(app, "POST", "/predict", files={"file": ("d.png", png, "image/png")}).json()
    inverted = call(app, "POST", "/predict?invert=1", files={"file": ("d.png", png, "image/png")}).json()
    assert plain["prediction"]["top_k"] != inverted["prediction"]["top_k"]  # the option reached the reader
    assert_json_error(call(app, "POST", "/predict?colour=1", files={"file": ("d.png", png)}), 422, "colour", "invert")
    assert_json_error(call(app, "POST", "/predict?cam=maybe", files={"file": ("d.png", png)}), 422, "cam")


def test_unknown_route_and_method_are_json(service):
    app = create_app(None, service=service)
    assert_json_error(call(app, "GET", "/nope"), 404, "/nope")
    assert_json_error(call(app, "GET", "/predict"), 405, "GET")


def test_page_and_static_files_come_from_the_package(service):
    app = create_app(None, service=service)
    page = call(app, "GET", "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert all(s.startswith("/") for s in srcs), srcs  # nothing from another origin (works offline)
    for asset in ("/static/app.js", "/static/style.css"):
        r = call(app, "GET", asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text


# ----------------------------------------------------------------------------- size limits
def test_declared_length_over_the_cap_is_refused_before_reading(service):
    app = create_app(None, service=service)
    pulled = []

    async def body():
        for _ in range(50):
            pulled.append(1)
            yield b"\0" * 2**20

    r = call(app, "POST", "/predict", content=body(),
             headers={"content-type": "application/octet-stream", "content-length": str(50 * 2**20)})
    assert_json_error(r, 413, "52,428,800 bytes", "10,485,760")
    assert len(pulled) <= 1  # the transport may prime one chunk; the server read none of them


def test_chunked_upload_stops_at_the_cap(run_dir):
    svc = Service(run_dir, ServeSettings(max_body_mb=2, threads=1))
    app = create_app(None, service=svc)
    pulled = []

    async def body():  # no Content-Length: chunked, as a streaming client sends it
        for _ in range(40):
            pulled.append(1)
            yield b"\0" * 2**20

    r = call(app, "POST", "/predict", content=body(), headers={"content-type": "application/octet-stream"})
    assert_json_error(r, 413, "2,097,152")
    assert len(pulled) <= 4  # read up to the cap (2 chunks) and one past it, never all 40


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (IHDR patched, CRC fixed): a
    decompression bomb's calling card, cheap to make."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


def test_pixel_bomb_is_refused_from_the_header(service, monkeypatch):
    app = create_app(None, service=service)
    bombs = {(w, h): _png_declaring(w, h) for w, h in ((20000, 5000), (40000, 40000))}
    decoded = []

    def no_decoding(self, *args):
        decoded.append(self.size)
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    # Over our cap (16.7 M) but under twice Pillow's limit; then past Pillow's own bomb check.
    for w, h, needle in ((20000, 5000, "100,000,000 pixels"), (40000, 40000, "decompression bomb")):
        r = call(app, "POST", "/predict", files={"file": ("bomb.png", bombs[w, h], "image/png")})
        assert_json_error(r, 413, needle)
    assert not decoded


def test_pixel_cap_is_the_servers_option(run_dir):
    app = create_app(None, service=Service(run_dir, ServeSettings(max_pixels=64 * 64, threads=1)))
    assert call(app, "POST", "/predict", files={"file": ("d.png", digit_png(2, 64), "image/png")}).status_code == 200
    r = call(app, "POST", "/predict", files={"file": ("d.png", digit_png(2, 65), "image/png")})
    assert_json_error(r, 413, "65x65 = 4,225 pixels", "4,096")


# ----------------------------------------------------------------------------- bad content
@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(service, content_type):
    app = create_app(None, service=service)
    assert_json_error(call(app, "POST", "/predict", content=b"7", headers={"content-type": content_type}),
                      415, content_type, "multipart/form-data")


@pytest.mark.parametrize("name,data,needle", [
    ("notes.txt", b"this is not an image\n", "Pillow cannot identify"),
    ("cut.png", None, "cut.png"),  # a truncated PNG: header fine, pixels missing
    ("noise.jpg", bytes(range(256)) * 8, "noise.jpg"),
    ("empty.png", b"", "empty file"),
])
def test_undecodable_input_is_422_naming_the_file(service, name, data, needle):
    app = create_app(None, service=service)
    data = digit_png(4)[:60] if data is None else data
    error = assert_json_error(call(app, "POST", "/predict", files={"file": (name, data, "image/png")}), 422, needle)
    assert "/tmp" not in error and "convnet-input-" not in error  # the server's temporary path never shows


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npy_uploads_are_checked_from_the_header(service, monkeypatch):
    import pickle

    app = create_app(None, service=service)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled an upload"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled an upload"))

    def npy(array, **kw) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, **kw)
        return buf.getvalue()

    objects = npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert_json_error(call(app, "POST", "/predict", files={"file": ("x.npy", objects)}), 422, "objects", "unpickling")
    garbage = b"\x93NUMPY\x01\x00" + b"\xff" * 40
    assert_json_error(call(app, "POST", "/predict", files={"file": ("x.npy", garbage)}), 422, "not a readable .npy")
    # A header that declares 10^12 values over 8 bytes of data: refused before any allocation.
    huge = npy_header((10**6, 10**6)) + b"\0" * 8
    assert_json_error(call(app, "POST", "/predict", files={"file": ("x.npy", huge)}), 413, "1,000,000,000,000")
    short = npy_header((4, 5)) + np.zeros((4, 4)).tobytes()
    assert_json_error(call(app, "POST", "/predict", files={"file": ("x.npy", short)}), 422, "(4, 5)", "128 bytes")
    # A well-formed array reaches the task, which for this image run says it wants an image.
    ok = npy(np.zeros((8, 8), np.float32))
    assert_json_error(call(app, "POST", "/predict", content=ok, headers={"content-type": "application/x-npy"}),
                      422, "upload.npy")


def test_multipart_framing_errors_are_422(service):
    app = create_app(None, service=service)
    boundary = "XyZ"
    no_file = f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}--\r\n"
    r = call(app, "POST", "/predict", content=no_file.encode(),
             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_json_error(r, 422, "no file")
    truncated = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nabc"
    r = call(app, "POST", "/predict", content=truncated.encode(),
             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_json_error(r, 422, "closing boundary")
    r = call(app, "POST", "/predict", content=b"abc", headers={"content-type": "multipart/form-data"})
    assert_json_error(r, 422, "boundary")


def test_parse_multipart_picks_the_file_field():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"other\"; filename=\"x.bin\"\r\n\r\nXX\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd\"\r\n"
            b"Content-Type: image/png\r\n\r\nline1\r\n--not-the-boundary\r\n--b--\r\n")
    name, data = parse_multipart(body, "multipart/form-data; boundary=b")
    assert name == "passwd" and data == b"line1\r\n--not-the-boundary"


def test_a_server_bug_is_a_generic_500_without_details(run_dir, caplog):
    svc = Service(run_dir, ServeSettings(threads=1))
    app = create_app(None, service=svc)

    def broken(prediction, run):
        raise RuntimeError("secret internal detail")

    svc.task.to_response = broken
    with caplog.at_level("ERROR", logger="convnet.serve"):
        r = call(app, "POST", "/predict", files={"file": ("d.png", digit_png(0), "image/png")})
    error = assert_json_error(r, 500, "internal server error")
    assert "secret" not in error
    assert "secret internal detail" in caplog.text  # the operator sees it in the log
    svc.close()


def test_run_without_safetensors_is_refused(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "model.safetensors").unlink()
    torch.save({}, copy / "model.pth")
    with pytest.raises(ValueError, match="safetensors only"):
        Service(copy)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_batch must be > 0, got 0"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ServeSettings(timeout_s=0)


# ----------------------------------------------------------------------------- load
def test_batching_groups_concurrent_requests_with_unbatched_answers(run_dir):
    svc = Service(run_dir, ServeSettings(max_batch=8, max_wait_ms=300, threads=1))
    app = create_app(None, service=svc)
    pngs = [digit_png(i) for i in range(8)]
    alone = [call(app, "POST", "/predict", files={"file": ("d.png", p, "image/png")}).json() for p in pngs[:2]]

    async def together():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/predict", files={"file": ("d.png", p, "image/png")})
                                          for p in pngs))

    answers = [r.json() for r in asyncio.run(together())]
    assert max(a["timing"]["batch_size"] for a in answers) > 1
    for one, batched in zip(alone, answers):
        assert [t["index"] for t in one["prediction"]["top_k"]] == [t["index"] for t in batched["prediction"]["top_k"]]
        np.testing.assert_allclose([t["prob"] for t in one["prediction"]["top_k"]],
                                   [t["prob"] for t in batched["prediction"]["top_k"]], rtol=1e-4, atol=1e-6)
    svc.close()


def test_one_bad_input_fails_alone_in_a_batch():
    def run_batch(payloads):
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [p.upper() for p in payloads]

    batcher = MicroBatcher(run_batch, max_batch=4, max_wait_s=0.2)

    async def main():
        return await asyncio.gather(*(batcher.submit(p) for p in ("a", "bad", "c")), return_exceptions=True)

    a, bad, c = asyncio.run(main())
    batcher.close()
    assert a[0] == "A" and c[0] == "C" and a[1].batch_size == 1
    assert isinstance(bad, ValueError)


def test_full_queue_answers_503_at_once(run_dir):
    svc = Service(run_dir, ServeSettings(queue=2, max_batch=1, threads=1))
    svc.model = SlowModel(svc.model, 0.6)
    app = create_app(None, service=svc)
    png = digit_png(0)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            post = lambda: client.post("/predict", files={"file": ("d.png", png, "image/png")})  # noqa: E731
            busy = [asyncio.create_task(post()) for _ in range(2)]
            while svc.admission.inside < 2:
                await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            refused = await post()
            refused_s = time.perf_counter() - t0
            return [await b for b in busy], refused, refused_s, await post()

    busy, refused, refused_s, later = asyncio.run(main())
    assert [r.status_code for r in busy] == [200, 200]
    assert_json_error(refused, 503, "2 requests already in progress")
    assert refused.headers["retry-after"] == "1"
    assert refused_s < 0.3  # answered at the door, not after the 0.6 s forward passes
    assert later.status_code == 200 and svc.admission.inside == 0
    svc.close()


def test_slow_prediction_times_out_with_504(run_dir):
    svc = Service(run_dir, ServeSettings(timeout_s=0.3, threads=1))
    svc.model = SlowModel(svc.model, 1.0)
    app = create_app(None, service=svc)
    t0 = time.perf_counter()
    r = call(app, "POST", "/predict", files={"file": ("d.png", digit_png(0), "image/png")})
    took = time.perf_counter() - t0
    assert_json_error(r, 504, "timeout")
    assert took < 0.9 and svc.admission.inside == 0
    svc.model = svc.model.inner
    time.sleep(1.0)  # the abandoned forward pass finishes; its late result is dropped
    assert call(app, "POST", "/predict", files={"file": ("d.png", digit_png(0), "image/png")}).status_code == 200
    svc.close()


# ----------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                     r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def _parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    assert text.endswith("\n")
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in typed
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name = m.group(1)
        assert any(name == t or name.startswith(t + "_") for t in typed), f"{name} has no # TYPE"
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        series.setdefault(name, []).append((labels, float(m.group(4))))
    return series


def test_metrics_are_prometheus_text_matching_the_traffic(run_dir):
    svc = Service(run_dir, ServeSettings(threads=1))
    app = create_app(None, service=svc)
    for _ in range(3):
        call(app, "POST", "/predict", files={"file": ("d.png", digit_png(0), "image/png")})
    call(app, "POST", "/predict", content=b"x", headers={"content-type": "text/plain"})
    call(app, "GET", "/healthz")
    call(app, "GET", "/does-not-exist")
    r = call(app, "GET", "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    series = _parse_metrics(r.text)
    counts = {(lab["path"], lab["method"], lab["status"]): v for lab, v in series["convnet_requests_total"]}
    assert counts == {("/predict", "POST", "200"): 3, ("/predict", "POST", "415"): 1, ("/healthz", "GET", "200"): 1,
                      ("other", "GET", "404"): 1}
    buckets = [(lab["le"], v) for lab, v in series["convnet_request_duration_seconds_bucket"] if lab["path"] == "/predict"]
    values = [v for _, v in buckets]
    assert buckets[-1][0] == "+Inf" and values == sorted(values)  # cumulative
    count = dict((lab["path"], v) for lab, v in series["convnet_request_duration_seconds_count"])
    assert count["/predict"] == values[-1] == 4
    total = dict((lab["path"], v) for lab, v in series["convnet_request_duration_seconds_sum"])
    assert 0 < total["/predict"] < 4 * 10
    assert series["convnet_batch_size_count"][0][1] == 3
    assert series["convnet_requests_in_progress"][0][1] == 0 and series["convnet_queue_limit"][0][1] == 64
    svc.close()


# ----------------------------------------------------------------------------- a real socket
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(run_dir):
    uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra (uvicorn) is not installed")
    app = create_app(None, service=Service(run_dir, ServeSettings(max_body_mb=1, threads=1)))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)
    app.state.service.close()


def test_real_socket_chunked_upload_is_cut_at_the_cap(live_server):
    conn = http.client.HTTPConnection("127.0.0.1", live_server, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"\0" * 65536
    sent = 0
    try:
        for _ in range(30 * 16):  # up to 30 MB; the server stops reading after 1 MB
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        conn.send(b"0\r\n\r\n")
    except OSError:  # the server answered and closed while we were still sending
        pass
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 413 and "1,048,576" in body["error"]
    conn.close()
    # The server is still up and answers the next client.
    conn = http.client.HTTPConnection("127.0.0.1", live_server, timeout=30)
    conn.request("POST", "/predict", body=digit_png(0), headers={"Content-Type": "image/png"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["prediction"]["label"] in [str(d) for d in range(10)]
    conn.close()


def test_real_socket_declared_length_is_refused_unread(live_server):
    conn = http.client.HTTPConnection("127.0.0.1", live_server, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Content-Length", str(5 * 2**30))  # 5 GB announced, nothing sent
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "5,368,709,120" in json.loads(r.read())["error"]
    conn.close()


def test_serve_command_line():
    import argparse

    from convnet.serve.cli import add_commands, is_loopback

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["serve", "--run", "runs/x"])
    assert (args.host, args.port, args.max_batch, args.max_wait_ms, args.queue, args.timeout_s, args.max_body_mb) == (
        "127.0.0.1", 8000, 16, 5.0, 64, 10.0, 10.0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")

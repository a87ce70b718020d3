"""The HTTP service of a training run: ``POST /predict``, ``GET /info``, ``/healthz``,
``/metrics`` and the web page at ``/``, on Starlette (run by uvicorn, see ``serve/cli.py``).

Every input goes through the run's Task, as ``convnet predict`` does: ``load_input_bytes``
reads the upload, ``collate`` / ``forward`` / ``postprocess`` predict, ``to_response`` makes the
JSON and ``describe`` the one-line text. Nothing here names a task, so segmentation masks and
detection boxes arrive through their tasks' ``to_response``.

A request meets the limits in this order, each refusal a JSON ``{"error", "status"}``:

1. admission: more than ``queue`` predictions in progress -> 503 at once, body unread;
2. content type: not a file upload -> 415, body unread;
3. body size: a declared or running count above ``max_body_mb`` -> 413, reading stops;
4. pixels: an image header declaring more than ``max_pixels`` -> 413, nothing decoded; a ``.npy``
   header declaring objects, a wrong length or too many values -> 422 / 413;
5. reading: the task cannot read it (corrupt image, wrong kind of file) -> 422;
6. time: the upload, the reading and the batch together take longer than ``timeout_s`` -> 504
   (408 while the body is still arriving).

Any other failure is logged with its traceback on the server and answered with a generic 500
that carries no detail: no stack trace ever reaches a client.
"""
from __future__ import annotations

import base64
import inspect
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batching import Admission, MicroBatcher
from .limits import (MB, ClientGone, ServeError, check_image_pixels, check_npy, guess_suffix, parse_multipart,
                     read_body, request_kind, safe_filename, within)
from .metrics import Metrics

__all__ = ["STATIC_DIR", "ServeSettings", "Service", "create_app"]

log = logging.getLogger("convnet.serve")

STATIC_DIR = Path(__file__).parent / "static"
ROUTES = ("/", "/predict", "/healthz", "/info", "/metrics")
# The page loads its own script, style and images only (data: URLs for the server's PNGs, blob:
# for the user's own file): no CDN, nothing inline.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits (the ``convnet serve`` options of the same names).

    Attributes:
        max_batch: most inputs per forward pass (1: no batching).
        max_wait_ms: how long the first input of a batch waits for others.
        queue: most prediction requests in progress at once; the next gets 503.
        timeout_s: most seconds from a request's arrival to its answer (504 after).
        threads: torch's intra-op threads for inference (None: torch's default).
        read_threads: threads that decode uploads (None: the inference threads' number, at most
            4); more would only contend for the same cores.
        max_body_mb: the largest request body (413 above).
        max_pixels: the largest image (width x height) or ``.npy`` (values) read (413 above; 0: no cap).
    """

    max_batch: int = 16
    max_wait_ms: float = 5.0
    queue: int = 64
    timeout_s: float = 10.0
    threads: int | None = None
    read_threads: int | None = None
    max_body_mb: float = 10.0
    max_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        checks = {"max_batch": self.max_batch >= 1, "max_wait_ms": self.max_wait_ms >= 0, "queue": self.queue >= 1,
                  "timeout_s": self.timeout_s > 0, "threads": self.threads is None or self.threads >= 1,
                  "read_threads": self.read_threads is None or self.read_threads >= 1,
                  "max_body_mb": self.max_body_mb > 0, "max_pixels": self.max_pixels >= 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(", ".join(f"{k} must be {'>= 0' if k in ('max_wait_ms', 'max_pixels') else '> 0'}, "
                                       f"got {getattr(self, k)!r}" for k in bad))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)


class Service:
    """A run's model and task behind the batching worker.

    Args:
        run_dir: a finished training run (``config.json`` + ``model.safetensors``).
        settings: the limits.

    Raises:
        ValueError: not a finished run, or a run without ``model.safetensors`` (weights are read
            from safetensors only: a pickle-based checkpoint is never loaded by the server).
    """

    def __init__(self, run_dir: str | Path, settings: ServeSettings | None = None):
        from ..train import load_run, run_task
        from ..weights import WEIGHTS_NAME

        self.settings = settings or ServeSettings()
        run_dir = Path(run_dir)
        if run_dir.is_dir() and not (run_dir / WEIGHTS_NAME).is_file():
            raise ValueError(f"{run_dir}: no {WEIGHTS_NAME}; the server loads weights from safetensors only")
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self.model, self.run = load_run(run_dir)
        self.run_name = run_dir.resolve().name
        self.task = run_task(self.run)
        params = inspect.signature(self.task.load_input).parameters.values()
        self.reading_options = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                                } - {"path", "run"}
        self.admission = Admission(self.settings.queue)
        # Uploads are decoded on a small pool of their own: a thread per admitted request would
        # put dozens of decoders (each with torch's own intra-op threads) on the inference cores.
        self.readers = ThreadPoolExecutor(self.settings.read_threads or min(4, torch.get_num_threads()),
                                          thread_name_prefix="convnet-serve-read")
        self.batcher = MicroBatcher(self.infer, self.settings.max_batch, self.settings.max_wait_ms / 1000.0)
        self.metrics = Metrics(ROUTES, gauges={
            "convnet_requests_in_progress": ("Prediction requests admitted and not yet answered.",
                                             lambda: self.admission.inside),
            "convnet_queue_depth": ("Inputs waiting for the batching worker.", lambda: len(self.batcher)),
            "convnet_queue_limit": ("The most prediction requests admitted at once (--queue).",
                                    lambda: self.admission.limit)})
        self.batcher.on_batch = self.metrics.observe_batch

    # ------------------------------------------------------------------ reading (a thread pool)
    def read(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        """An upload as a model input sample, through the task (raises ServeError 422 / 415)."""
        try:
            return self.task.load_input_bytes(data, filename, self.run, **options)
        except ValueError as e:  # DataFormatError and friends: the reader's one line
            raise ServeError(422, str(e)) from None
        except ImportError as e:  # e.g. NIfTI without nibabel: this server cannot read the type
            raise ServeError(415, f"{filename}: this server cannot read this type of file ({e})") from None
        except Exception:
            log.exception("reading %s failed", filename)
            raise ServeError(422, f"{filename}: could not be read as this run's input") from None

    # ------------------------------------------------------------------ inference (the worker thread)
    def infer(self, payloads: Sequence[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
        """One forward pass over the samples; each answer is the task's JSON response and text,
        plus a Grad-CAM overlay for the payloads that asked (``(sample, cam)`` pairs)."""
        samples = [sample for sample, _ in payloads]
        with torch.inference_mode():
            batch = self.task.collate(samples)
            predictions = self.task.postprocess(self.task.forward(self.model, batch), batch)
        answers = [{"prediction": self.task.to_response(p, self.run), "text": self.task.describe(p, self.run)}
                   for p in predictions]
        wanted = [i for i, (_, cam) in enumerate(payloads) if cam]
        if wanted:
            self._add_cams(answers, [samples[i] for i in wanted], wanted)
        return answers

    def _add_cams(self, answers: list[dict[str, Any]], samples: list[dict[str, Any]], where: list[int]) -> None:
        from ..analysis.cam import grad_cam

        x = torch.stack([s["input"] for s in samples])
        # Explain the class the response names first (classification's top-1); else the top logit.
        targets = [answers[i]["prediction"].get("index") for i in where]
        try:
            result = grad_cam(self.model, x, target=targets if None not in targets else None)
            pngs = [cam_overlay_png(x[j], result.cam[j], self.run) for j in range(len(where))]
        except Exception as e:  # the map is an extra: its failure must not cost the prediction
            if not isinstance(e, ValueError):  # ValueError: a model without a map to explain, said in one line
                log.exception("Grad-CAM failed")
            reason = f": {e}" if isinstance(e, ValueError) else " (details are in the server log)"
            for i in where:
                answers[i]["cam"] = {"error": f"no Grad-CAM for this model{reason}"}
            return
        for j, i in enumerate(where):
            answers[i]["cam"] = {"png": pngs[j], "layer": result.layer or "forward_features",
                                 "class": int(result.classes[j])}

    def close(self) -> None:
        """Stop the batching worker and the readers."""
        self.batcher.close()
        self.readers.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ what /info says
    def info(self) -> dict[str, Any]:
        data = self.run.get("data") or {}
        model_cfg = self.run.get("model") or {}
        return {"run": self.run_name,
                "model": {**model_cfg, "params": sum(p.numel() for p in self.model.parameters())},
                "task": {"name": self.task.name, "options": self.task.options},
                "classes": list(data.get("classes") or []),
                "input": {"kind": str(data.get("input") or "image"), "preprocess": data.get("preprocess"),
                          "options": sorted(self.reading_options)},
                "limits": {**asdict(self.settings), "max_body_bytes": self.settings.max_body_bytes}}


def cam_overlay_png(x: torch.Tensor, cam: torch.Tensor, run: dict[str, Any], min_side: int = 256) -> str:
    """The model's view of an input (C, H, W), normalisation undone, with the map (H, W) in
    [0, 1] laid over it in the jet colours, as a base64 PNG scaled up (nearest) to at least
    ``min_side`` pixels. A volume shows its middle slice; a 1-D input has no picture (ValueError)."""
    from matplotlib import colormaps
    from PIL import Image

    if x.ndim == 4:  # (C, D, H, W): the middle slice
        x, cam = x[:, x.shape[1] // 2], cam[cam.shape[0] // 2]
    if x.ndim != 3:
        raise ValueError("a Grad-CAM picture needs a 2-D or 3-D input")
    pre = (run.get("data") or {}).get("preprocess") or {}
    c = x.shape[0]
    mean = torch.tensor(pre.get("mean") or [0.0] * c, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(pre.get("std") or [1.0] * c, dtype=torch.float32).view(-1, 1, 1)
    image = (x.detach().float().cpu() * std + mean).clamp(0, 1)
    image = image.expand(3, *image.shape[1:]) if c == 1 else image[:3]
    heat = torch.from_numpy(colormaps["jet"](cam.detach().float().cpu().numpy())[..., :3]).permute(2, 0, 1).float()
    blended = (0.5 * image + 0.5 * heat).permute(1, 2, 0).numpy()
    picture = Image.fromarray((blended * 255).round().astype(np.uint8), "RGB")
    scale = max(1, math.ceil(min_side / max(picture.size)))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- JSON
def _plain(value: Any) -> Any:
    """JSON-safe: tensors and arrays as lists, NumPy scalars as numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None):
    from starlette.responses import Response

    body = json.dumps(_plain(content), allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **(headers or {})})


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    return json_response({"error": message, "status": status}, status, headers)


# ----------------------------------------------------------------------------- the app
class _Guard:
    """Outermost ASGI layer: counts every HTTP answer by route and status with its latency,
    marks responses ``nosniff``, and turns any exception that escapes the app into a generic
    JSON 500 (the traceback goes to the server log only)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0}

        async def send_marked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]}
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if status["code"] == 0:  # nothing sent yet: the client still gets an answer
                status["code"] = 500
                await error_response(500, "internal server error (details are in the server log)")(scope, receive, send)
        finally:
            self.metrics.observe_request(scope.get("method", ""), scope.get("path", ""), status["code"] or 500,
                                         time.perf_counter() - start)


def create_app(run_dir: str | Path, settings: ServeSettings | None = None, service: Service | None = None):
    """The Starlette application serving ``run_dir`` (or an existing ``service``); its
    ``state.service`` is the :class:`Service`."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    service = service or Service(run_dir, settings)
    limits = service.settings

    async def index(request: Request):
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                                "Cache-Control": "no-cache"})

    async def healthz(request: Request):
        return json_response({"status": "ok", "in_progress": service.admission.inside})

    async def info(request: Request):
        return json_response(service.info())

    async def metrics(request: Request):
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def predict(request: Request):
        if not service.admission.try_enter():
            raise ServeError(503, f"server busy: {service.admission.limit} requests already in progress (--queue); "
                                  "retry shortly", {"Retry-After": "1"})
        try:
            return await _predict(request)
        finally:
            service.admission.leave()

    async def _predict(request: Request):
        import asyncio

        deadline = asyncio.get_running_loop().time() + limits.timeout_s
        content_type = request.headers.get("content-type", "")
        kind = request_kind(content_type)
        options = _options(request, service.reading_options)
        want_cam = options.pop("cam", False)
        try:
            body = await within(read_body(request.receive, request.headers.get("content-length"),
                                          limits.max_body_bytes), deadline, 408, "the upload")
        except ClientGone:
            raise ServeError(400, "the client disconnected during the upload") from None
        if kind == "multipart":
            filename, data = parse_multipart(body, content_type)
        else:
            data = body
            filename = safe_filename(request.query_params.get("filename") or request.headers.get("x-filename")
                                     or f"upload{guess_suffix(data)}")
        del body
        if not data:
            raise ServeError(422, f"{filename}: empty file")
        check_image_pixels(data, limits.max_pixels)
        check_npy(data, limits.max_pixels)
        started = time.perf_counter()
        reading = asyncio.get_running_loop().run_in_executor(service.readers, service.read, data, filename, options)
        sample = await within(reading, deadline, 504,
                              "reading the input")
        read_s = time.perf_counter() - started
        try:
            answer, job = await within(service.batcher.submit((sample, want_cam)), deadline, 504,
                                       "the prediction")
        except ValueError as e:  # the model refused this input (e.g. too small for the network)
            raise ServeError(422, f"{filename}: {e}") from None
        return json_response({"filename": filename, "task": service.task.name, **answer,
                              "timing": {"read_ms": 1000 * read_s, "total_ms": 1000 * (time.perf_counter() - started),
                                         "batch_size": job.batch_size}})

    async def serve_error(request: Request, exc: ServeError):
        return error_response(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: HTTPException):
        text = {404: f"no such endpoint: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return error_response(exc.status_code, text.get(exc.status_code, str(exc.detail)), dict(exc.headers or {}))

    @asynccontextmanager
    async def lifespan(app: Any):
        yield
        service.close()

    app = Starlette(
        routes=[Route("/", index, methods=["GET", "HEAD"]),
                Route("/healthz", healthz, methods=["GET", "HEAD"]),
                Route("/info", info, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                Route("/predict", predict, methods=["POST"]),
                Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")],
        middleware=[Middleware(_Guard, metrics=service.metrics)],
        exception_handlers={ServeError: serve_error, HTTPException: http_error},
        lifespan=lifespan)
    app.state.service = service
    return app


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _options(request: Any, reading_options: set[str]) -> dict[str, Any]:
    """``?cam=1`` and the task's boolean reading options (``?invert=1``) from the query string."""
    out: dict[str, Any] = {}
    for key, value in request.query_params.items():
        if key in ("filename",):
            continue
        if key != "cam" and key not in reading_options:
            allowed = ", ".join(sorted({"cam", "filename", *reading_options}))
            raise ServeError(422, f"unknown query parameter {key!r}; this run takes: {allowed}")
        if value.lower() not in _TRUE + _FALSE:
            raise ServeError(422, f"query parameter {key}={value[:20]!r}: expected 1/0 or true/false")
        out[key] = value.lower() in _TRUE
    return out

"""The web page of ``convnet serve`` in a real browser: Debian's headless Chromium driven by
Playwright (its bundled browsers are never downloaded; ``executable_path`` points at the system
one). The test starts ``convnet serve`` on a free loopback port, opens the page, uploads a digit
and reads the rendered top-1 class (it must be the class /predict gives for the same bytes),
then uploads a text file and reads the error the page shows. It also takes a screenshot: the
README's (docs/images/serve.png) when CONVNET_SERVE_RUN names the run to show. A second test
checks that the page paints a segmentation mask and detection boxes found in an answer.

A machine without Chromium or Playwright skips with the reason; CI sets
CONVNET_REQUIRE_BROWSER=1 (.ci/run), which turns that skip into a failure.
CONVNET_SERVE_RUN=DIR serves that run instead of the tiny one trained here and writes the
screenshot to docs/images/serve.png (the README's shows the default job's run:
``CONVNET_SERVE_RUN=runs/lenet5-digits-... pytest tests/test_serve_browser.py``).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_serve import digit_png, digits_run

# A browser and a `convnet serve` process take tens of seconds to start on 2 cores: `make test`
# runs these, `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CONVNET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CONVNET_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _chromium() -> str:
    for candidate in ("chromium", "chromium-browser"):
        path = shutil.which(candidate)
        if path:
            return path
    _unavailable("no Chromium on this machine (Debian: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright; no `playwright install` needed)")
    browser = _chromium()
    run = Path(os.environ["CONVNET_SERVE_RUN"]) if os.environ.get("CONVNET_SERVE_RUN") else digits_run(tmp_path_factory)
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "convnet", "serve", "--run", str(run), "--port", str(port),
                                 "--threads", "1"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"convnet serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield {"port": port, "chromium": browser, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_page_shows_the_top1_class_and_the_servers_errors(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    port = server["port"]
    origin = f"http://127.0.0.1:{port}"
    png = digit_png(7, 64)
    status, expected = _get(port, "/predict", png, {"Content-Type": "image/png"})
    assert status == 200

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=server["chromium"], headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            requested, problems = [], []
            page.on("request", lambda req: requested.append(req.url))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(origin + "/")
            # Waits go through Playwright's selectors: the page's CSP forbids the eval of wait_for_function.
            expect(page.locator("#info")).to_contain_text("classify", timeout=30000)

            page.set_input_files("#file", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png}])
            expect(page.locator("#top1")).not_to_be_empty(timeout=30000)
            expect(page.locator("#cam-image")).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
            top1 = page.inner_text("#top1")
            assert top1 == expected["prediction"]["label"]
            bars = page.locator("#bars li")
            assert bars.count() == len(expected["prediction"]["top_k"])
            assert bars.first.locator(".bar-label").inner_text() == top1
            assert page.is_visible("#cam-image") and not page.is_visible("#error")
            # The README's picture is of a real run (CONVNET_SERVE_RUN); the tiny run's goes to tmp,
            # so running the tests does not rewrite a tracked file.
            shot = REPO / "docs" / "images" / "serve.png" if os.environ.get("CONVNET_SERVE_RUN") else tmp_path / "serve.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                  "buffer": b"not a picture of a digit\n"}])
            page.wait_for_selector("#error", state="visible", timeout=30000)
            error = page.inner_text("#error")
            assert "422" in error and "notes.txt" in error and "Pillow cannot identify" in error
            assert not page.is_visible("#results")  # the old answer is not left standing beside the error
        finally:
            browser.close()
    assert all(url.startswith(origin) or url.startswith(("data:", "blob:")) for url in requested), requested
    # The failed upload's 422 is the only console error: the CSP blocked nothing, no script failed.
    assert all("422" in text for text in problems), problems


def test_page_draws_a_mask_and_boxes_from_the_answer(server, tmp_path_factory):
    """Segmentation and detection tasks answer with ``mask`` and ``boxes`` (Task.to_response);
    the page draws them over the image. A classification run stands in, its task's answer
    extended with a mask (class 1 in a square) and one box, served in this process."""
    import base64
    import io
    import threading

    import numpy as np
    import uvicorn
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from convnet.serve import ServeSettings, Service, create_app

    service = Service(digits_run(tmp_path_factory), ServeSettings(threads=1))
    plain = service.task.to_response
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 24:56] = 1
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    extra = {"mask": {"png": base64.b64encode(buf.getvalue()).decode(), "classes": ["background", "ink"]},
             "boxes": [{"box": [4, 4, 30, 60], "label": "seven", "score": 0.9}]}
    service.task.to_response = lambda prediction, run: {**plain(prediction, run), **extra}
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(None, service=service), host="127.0.0.1", port=port,
                                       log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not uv.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=server["chromium"], headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 720})
                page.goto(f"http://127.0.0.1:{port}/")
                expect(page.locator("#info")).to_contain_text("classify", timeout=30000)
                page.locator("#cam").uncheck()
                page.set_input_files("#file", files=[{"name": "d.png", "mimeType": "image/png",
                                                      "buffer": digit_png(7, 64)}])
                expect(page.locator("#top1")).not_to_be_empty(timeout=30000)
                time.sleep(0.5)  # the mask is decoded and painted after the answer is shown
                stage = np.asarray(Image.open(io.BytesIO(page.locator("#stage").screenshot())).convert("RGB"))
            finally:
                browser.close()
    finally:
        uv.should_exit = True
        thread.join(10)
        service.close()
    # The digit is gray; only the overlay brings colour. Rows through the mask's square (image
    # rows 8-40 of 64) are coloured across its columns (24-56), rows below it are not, except
    # where the box's edges run.
    colour = (stage.max(2).astype(int) - stage.min(2).astype(int)) > 40
    h, w = colour.shape
    inside = colour[int(h * 16 / 64):int(h * 32 / 64), int(w * 34 / 64):int(w * 50 / 64)]
    outside = colour[int(h * 44 / 64):int(h * 56 / 64), int(w * 34 / 64):int(w * 50 / 64)]
    assert inside.mean() > 0.9 and outside.mean() < 0.05, (inside.mean(), outside.mean())
    box_edge = colour[int(h * 44 / 64):int(h * 56 / 64), : int(w * 8 / 64)]  # the box's left edge at x=4
    assert box_edge.any(axis=1).mean() > 0.9

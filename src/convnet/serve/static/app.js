// The page of `convnet serve`: send a file to /predict and draw the JSON answer.
// Plain browser JavaScript, no library and nothing from another origin, so it works offline.
// It draws whatever keys the task's response holds: top_k (bars), cam (heat map), mask (a
// colour overlay) and boxes (rectangles); every error from the server is shown, not swallowed.
"use strict";

const $ = (id) => document.getElementById(id);
let previewUrl = null;
let requestCounter = 0;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (e) {
    return null;
  }
}

async function loadInfo() {
  $("origin").textContent = window.location.origin;
  let response;
  try {
    response = await fetch("/info");
  } catch (e) {
    showError(`The server cannot be reached: ${e.message}`);
    return;
  }
  const info = await readJson(response);
  if (!response.ok || !info) {
    showError(`GET /info failed (${response.status}): ${info && info.error ? info.error : "no reason given"}`);
    return;
  }
  const pre = (info.input && info.input.preprocess) || {};
  const size = pre.size ? `${pre.channels}×${pre.size.join("×")}` : "any size";
  const classes = info.classes.length ? `, ${info.classes.length} classes` : "";
  $("info").textContent = `${info.model.name} (${info.task.name}${classes}), input ${size}, run ${info.run}`;
  $("invert-option").hidden = !(info.input.options || []).includes("invert");
}

function clearResults() {
  $("results").hidden = true;
  $("bars").replaceChildren();
  $("top1").textContent = "";
  $("text").textContent = "";
  $("cam-figure").hidden = true;
  const canvas = $("overlay");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

async function send(file) {
  clearError();
  clearResults();
  const mine = ++requestCounter;  // an older answer arriving late must not overwrite a newer one
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  $("preview").src = previewUrl;
  $("preview-caption").textContent = file.name;

  const params = new URLSearchParams();
  if ($("cam").checked) params.set("cam", "1");
  if (!$("invert-option").hidden && $("invert").checked) params.set("invert", "1");
  const form = new FormData();
  form.append("file", file, file.name);
  $("status").textContent = `Sending ${file.name} (${file.size.toLocaleString()} bytes)…`;
  const started = performance.now();
  let response;
  try {
    response = await fetch(`/predict?${params}`, { method: "POST", body: form });
  } catch (e) {
    if (mine !== requestCounter) return;
    $("status").textContent = "";
    showError(`The server cannot be reached: ${e.message}`);
    return;
  }
  const body = await readJson(response);
  if (mine !== requestCounter) return;
  const ms = Math.round(performance.now() - started);
  if (!response.ok) {
    $("status").textContent = "";
    const reason = body && body.error ? body.error : "the server gave no reason";
    showError(`Error ${response.status}: ${reason}`);
    return;
  }
  if (!body || !body.prediction) {
    $("status").textContent = "";
    showError(`Error: the server answered ${response.status} without a prediction`);
    return;
  }
  const batch = body.timing && body.timing.batch_size ? `, in a batch of ${body.timing.batch_size}` : "";
  $("status").textContent = `Answered in ${ms} ms${batch}.`;
  render(body);
}

function render(body) {
  const p = body.prediction;
  $("results").hidden = false;
  $("top1").textContent = p.label !== undefined ? String(p.label) : "(see below)";
  $("text").textContent = body.text || "";
  for (const row of p.top_k || []) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = row.label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(0, Math.min(1, row.prob)) * 100}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${(row.prob * 100).toFixed(1)}%`;
    item.append(name, track, value);
    $("bars").append(item);
  }
  if (body.cam) {
    $("cam-figure").hidden = false;
    if (body.cam.png) {
      $("cam-image").hidden = false;
      $("cam-image").src = `data:image/png;base64,${body.cam.png}`;
      $("cam-caption").textContent = `Grad-CAM of class ${p.label ?? body.cam.class} at ${body.cam.layer}, on the model's input`;
    } else {
      $("cam-image").hidden = true;
      $("cam-caption").textContent = body.cam.error || "no heat map";
    }
  }
  const image = $("preview");
  const draw = () => drawOverlay(p, image);
  if (image.complete && image.naturalWidth) draw(); else image.onload = draw;
}

// A segmentation mask (class indices as an 8-bit PNG) in colour, and detection boxes, over
// the uploaded image, in its own pixel coordinates.
function drawOverlay(p, image) {
  const canvas = $("overlay");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (p.mask && p.mask.png) {
    const mask = new Image();
    mask.onload = () => {
      const scratch = document.createElement("canvas");
      scratch.width = canvas.width;
      scratch.height = canvas.height;
      const sctx = scratch.getContext("2d");
      sctx.imageSmoothingEnabled = false;
      sctx.drawImage(mask, 0, 0, scratch.width, scratch.height);
      const pixels = sctx.getImageData(0, 0, scratch.width, scratch.height);
      for (let i = 0; i < pixels.data.length; i += 4) {
        const k = pixels.data[i];  // the class index (gray level)
        const [r, g, b] = palette(k);
        pixels.data[i] = r; pixels.data[i + 1] = g; pixels.data[i + 2] = b;
        pixels.data[i + 3] = k === 0 ? 0 : 140;  // class 0 (background) stays clear
      }
      ctx.putImageData(pixels, 0, 0);
      drawBoxes(ctx, p.boxes || []);
    };
    mask.src = `data:image/png;base64,${p.mask.png}`;
  } else {
    drawBoxes(ctx, p.boxes || []);
  }
}

function drawBoxes(ctx, boxes) {
  ctx.lineWidth = Math.max(2, Math.round(ctx.canvas.width / 200));
  ctx.font = `${Math.max(12, Math.round(ctx.canvas.width / 40))}px sans-serif`;
  boxes.forEach((b, i) => {
    const [x1, y1, x2, y2] = b.box;
    const [r, g, bl] = palette(i + 1);
    ctx.strokeStyle = `rgb(${r},${g},${bl})`;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${b.label}${b.score !== undefined ? ` ${(b.score * 100).toFixed(0)}%` : ""}`;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillRect(x1, Math.max(0, y1 - 18), ctx.measureText(text).width + 8, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 4, Math.max(13, y1 - 4));
  });
}

function palette(k) {
  // Distinct colours by golden-ratio hue steps.
  const h = (k * 0.618033988749895) % 1;
  const f = (n) => {
    const x = (n + h * 12) % 12;
    return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(x - 3, 9 - x, 1))));
  };
  return [f(0), f(8), f(4)];
}

function setup() {
  const input = $("file");
  input.addEventListener("change", () => {
    if (input.files.length) send(input.files[0]);
    input.value = "";  // choosing the same file again sends it again
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
  });
  // A file dropped beside the drop zone must not make the browser open it instead.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setup);

"""`facegan ui`: a page in the browser over any server that speaks TF Serving's REST API.

    facegan ui --rest HOST:8501 --model NAME [--port 8080] [--host 127.0.0.1]

The page discovers what to show from the model's signatures (`GET /v1/models/NAME/metadata`), so
one page serves every kind of the generator contract (facegan/generator/__init__.py):

- `sample`: a grid by seed, with a truncation slider (psi);
- `sample_cutoff` (StyleGAN2 exports): a truncation-cutoff slider, its range read from the
  graph's own bounds message;
- `style_mix` (StyleGAN2): two seeds and a crossover slider (seed A's styles below the crossover
  layer, seed B's from it on), with both seeds' images beside the mix;
- `sample` with an `attributes` input (conditional exports): one slider per name of the
  `attribute_names` signature, on the vector `sample` takes;
- `edit_sample` (a version written by `facegan directions`): one strength slider per attribute
  direction (names from `attribute_names`), applied to the seed's latents;
- `translate_<direction>` (image-to-image exports): an upload, its centre square resized to the
  model's input size (read from the graph's own size check), and the translation beside it;
- the model's status and version, the signatures with their inputs and outputs, and the export's
  metadata (preset, steps, metrics at export, ...) from the input-less `facegan_metadata` signature,
  which every export has (TF Serving's API has no access to the metadata asset; exports made
  before that signature existed show a note instead).

Images are drawn from the signatures' uint8 `images` output (not their `png` strings: the real
TF Serving writes non-`_bytes` string outputs as raw bytes inside JSON strings), as PNG data URLs.

Why plain HTML + JS over the REST API, served by Python's http.server: the demo library people
use for this, gradio, does not fit the locked environment. gradio >= 4 needs pydantic >= 2, and
kfp 1.8.22 (TFX 1.15's Kubeflow runner) pins pydantic < 2; gradio 3.50.2, the last release that
accepts pydantic 1, pins pillow < 11 (the lock has 12.3), brings pandas, matplotlib, altair,
huggingface-hub, fastapi and uvicorn into the serving image, and is no longer maintained.
Streamlit-style app servers have the same cost for one page. The page here needs nothing that
the lock lacks. This server also proxies `/v1/...` to the REST server (same origin, so no CORS
setup is needed on TF Serving, which sends no CORS headers).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

log = logging.getLogger("facegan.ui")

MAX_BODY_BYTES = 64 << 20          # the REST server's own request limit (serving/rest_api.py)
PROXY_TIMEOUT_S = 300.0
_MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facegan: __MODEL__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.2em; background: #fafafa; color: #222; }
 h1 { font-size: 1.3em; margin: 0 0 .4em 0; } h2 { font-size: 1.05em; margin: .2em 0 .5em 0; }
 section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .7em 1em; margin: .7em 0; }
 label { display: inline-block; margin: .2em 1em .2em 0; } input[type=number] { width: 6em; }
 input[type=range] { width: 11em; vertical-align: middle; }
 .images img { width: 96px; height: 96px; image-rendering: pixelated; margin: 2px; border: 1px solid #ccc; }
 .row { display: flex; align-items: center; gap: .6em; } .row .tag { width: 5em; font-size: .85em; color: #555; }
 .error { color: #b00; white-space: pre-wrap; } .muted { color: #666; font-size: .85em; }
 table { border-collapse: collapse; font-size: .8em; } td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
 pre { font-size: .8em; max-height: 18em; overflow: auto; background: #f4f4f4; padding: .5em; }
 .hidden { display: none; }
</style></head>
<body>
<h1>facegan &middot; model <code id="model-name">__MODEL__</code> <span id="model-version" class="muted"></span></h1>
<div id="status" class="muted">reading the model's signatures...</div>
<div id="error" class="error"></div>

<section id="grid-section" class="hidden"><h2>Samples by seed</h2>
 <label>seed <input id="seed" type="number" value="1" min="0"></label>
 <label>images <input id="num" type="number" value="8" min="1" max="64"></label>
 <label>truncation &psi; <input id="truncation" type="range" min="0.05" max="1" step="0.05" value="1">
  <span id="truncation-value">1</span></label>
 <label id="cutoff-label" class="hidden">cutoff <input id="cutoff" type="range" min="0" max="1" step="1" value="0">
  <span id="cutoff-value">0</span> <span class="muted">(layers &lt; cutoff truncated)</span></label>
 <div id="attributes" class="hidden"><span class="muted">attributes (conditional generator):</span> <span id="attribute-sliders"></span></div>
 <div id="edits" class="hidden"><span class="muted">attribute directions (edit):</span> <span id="edit-sliders"></span></div>
 <div><button id="grid-button">Generate</button> <span id="grid-time" class="muted"></span></div>
 <div id="grid" class="images"></div>
</section>

<section id="mix-section" class="hidden"><h2>Style mixing</h2>
 <label>seed A <input id="seed-a" type="number" value="1" min="0"></label>
 <label>seed B <input id="seed-b" type="number" value="2" min="0"></label>
 <label>images <input id="mix-num" type="number" value="4" min="1" max="16"></label>
 <label>crossover <input id="crossover" type="range" min="0" max="8" step="1" value="2"> <span id="crossover-value">2</span>
  <span class="muted">(A's styles below this layer, B's from it on)</span></label>
 <div><button id="mix-button">Mix</button></div>
 <div class="row"><span class="tag">seed A</span><span id="mix-a" class="images"></span></div>
 <div class="row"><span class="tag">mix</span><span id="mix" class="images"></span></div>
 <div class="row"><span class="tag">seed B</span><span id="mix-b" class="images"></span></div>
</section>

<section id="translate-section" class="hidden"><h2>Translate a photo</h2>
 <label>direction <select id="direction"></select></label>
 <label>photo <input id="upload" type="file" accept="image/*"></label>
 <span class="muted">its centre square, resized to <span id="input-size">?</span> px</span>
 <div class="row"><span class="tag">input</span><span id="translate-input" class="images"></span>
  <span class="tag">output</span><span id="translate-output" class="images"></span></div>
</section>

<section id="meta-section"><h2>Model</h2>
 <div id="export-meta"></div>
 <table id="signatures"><tr><th>signature</th><th>inputs</th><th>outputs</th></tr></table>
</section>

<script>
"use strict";
const MODEL = "__MODEL__";
const $ = (id) => document.getElementById(id);
const state = {busy: 0, kind: null, sigs: {}, attributeNames: [], editNames: [], numWs: null, inputSize: null};
window.facegan = state;            // read by the browser test

function setBusy(d) { state.busy += d; document.body.dataset.busy = String(state.busy); }
function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

async function call(method, path, body) {
  setBusy(1);
  try {
    const r = await fetch("/v1/models/" + MODEL + path, {method, headers: {"Content-Type": "application/json"},
                                                       body: body === undefined ? undefined : JSON.stringify(body)});
    const j = await r.json().catch(() => ({error: "HTTP " + r.status + " (not JSON)"}));
    if (!r.ok) { const e = new Error(j.error || ("HTTP " + r.status)); e.status = r.status; throw e; }
    return j;
  } finally { setBusy(-1); }
}
async function predict(signature, inputs) {
  const j = await call("POST", ":predict", {signature_name: signature, inputs});
  return j.outputs;
}
// The columnar REST format returns a lone output bare and several as an object.
function output(outs, name) {
  return (outs && !Array.isArray(outs) && typeof outs === "object" && name in outs) ? outs[name] : outs;
}
function dims(info) {
  const s = info.tensor_shape || {};
  if (s.unknown_rank) return null;
  return (s.dim || []).map((d) => parseInt(d.size, 10));
}
// uint8 [R, R, 3] nested list -> PNG data URL (lossless: the test decodes it).
function toDataURL(img) {
  const h = img.length, w = img[0].length;
  const c = document.createElement("canvas"); c.width = w; c.height = h;
  const ctx = c.getContext("2d"), data = ctx.createImageData(w, h);
  let k = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const p = img[y][x]; data.data[k++] = p[0]; data.data[k++] = p[1]; data.data[k++] = p[2]; data.data[k++] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return c.toDataURL("image/png");
}
function show(id, images) {
  const el = $(id); el.innerHTML = "";
  for (const img of images) { const i = document.createElement("img"); i.src = toDataURL(img); el.appendChild(i); }
  el.dataset.count = String(images.length);
  state.renders = (state.renders || 0) + 1;
}
function slider(container, name, min, max, step, value, prefix) {
  const label = document.createElement("label");
  label.innerHTML = `${name} <input type="range" min="${min}" max="${max}" step="${step}" value="${value}" data-name="${name}" id="${prefix}-${name}"> <span id="${prefix}-${name}-value">${value}</span>`;
  container.appendChild(label);
  const input = label.querySelector("input");
  input.addEventListener("input", () => { $(`${prefix}-${name}-value`).textContent = input.value; });
  input.addEventListener("change", () => runGrid());
}
function int(id) { return parseInt($(id).value, 10); }
function num(id) { return parseFloat($(id).value); }

// -- discovery --------------------------------------------------------------------------------------
async function boundsProbe(signature, inputs, pattern) {
  // The graph's own bounds check names the range ("must be in [0, 8]"); any server returns it.
  try { await predict(signature, inputs); } catch (e) { const m = String(e.message).match(pattern); if (m) return m; }
  return null;
}
async function discover() {
  const meta = await call("GET", "/metadata");
  state.version = meta.model_spec && meta.model_spec.version;
  $("model-version").textContent = state.version ? "version " + state.version : "";
  const sigs = state.sigs = meta.metadata.signature_def.signature_def;
  const table = $("signatures");
  for (const name of Object.keys(sigs).sort().filter((n) => !n.startsWith("__"))) {
    const fmt = (m) => Object.entries(m || {}).sort().map(([k, v]) => `${k} ${(v.dtype || "").replace("DT_", "").toLowerCase()} ${dims(v) ? JSON.stringify(dims(v)).replace(/-1/g, "N") : "any shape"}`).join("<br>");
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${name}</td><td>${fmt(sigs[name].inputs)}</td><td>${fmt(sigs[name].outputs)}</td>`;
    table.appendChild(tr);
  }
  if (sigs.facegan_metadata) {
    try {
      const m = JSON.parse([].concat(output(await predict("facegan_metadata", {}), "metadata"))[0]);
      const keep = ["kind", "architecture", "preset", "steps", "images_shown", "resolution", "final_metrics", "metrics", "directions", "exported_at"];
      const shown = {}; for (const k of keep) if (k in m) shown[k] = m[k];
      $("export-meta").innerHTML = "<pre id='export-meta-json'></pre>"; $("export-meta-json").textContent = JSON.stringify(shown, null, 1);
    } catch (e) { $("export-meta").textContent = "facegan_metadata: " + e.message; }
  } else {
    $("export-meta").innerHTML = "<span class='muted'>no facegan_metadata signature: the export's metadata asset is not reachable over the REST API</span>";
  }
  const translates = Object.keys(sigs).filter((s) => s.startsWith("translate_"));
  if (translates.length) {
    state.kind = "image_to_image";
    for (const s of translates) { const o = document.createElement("option"); o.value = s; o.textContent = s.slice(10); $("direction").appendChild(o); }
    const m = await boundsProbe(translates[0], {images: [[[[0, 0, 0]]]]}, /\[N, (\d+), (\d+), 3\]/);
    const out = dims(Object.values(sigs[translates[0]].outputs)[0]);
    state.inputSize = m ? parseInt(m[1], 10) : out[1];
    $("input-size").textContent = String(state.inputSize);
    $("translate-section").classList.remove("hidden");
    $("upload").addEventListener("change", runTranslate);
    $("direction").addEventListener("change", runTranslate);
  }
  if (sigs.sample) {
    state.kind = "attributes" in (sigs.sample.inputs || {}) ? "conditional" : "unconditional";
    $("grid-section").classList.remove("hidden");
    if (sigs.attribute_names) {
      const names = output(await predict("attribute_names", {}), "attribute_names").map(String);
      if (state.kind === "conditional") {
        state.attributeNames = names; $("attributes").classList.remove("hidden");
        for (const n of names) slider($("attribute-sliders"), n, 0, 1, 0.05, 0, "attr");
      }
      if (sigs.edit_sample) {
        state.editNames = names; $("edits").classList.remove("hidden");
        for (const n of names) slider($("edit-sliders"), n, -3, 3, 0.1, 0, "edit");
      }
    }
    if (sigs.sample_cutoff) {
      const m = await boundsProbe("sample_cutoff", {num: 1, seed: 0, truncation: 1.0, truncation_cutoff: -1}, /\[0, (\d+)\]/);
      if (m) {
        state.numWs = parseInt(m[1], 10);
        $("cutoff").max = String(state.numWs); $("cutoff").value = String(state.numWs); $("cutoff-value").textContent = String(state.numWs);
        $("cutoff-label").classList.remove("hidden");
      }
    }
    for (const id of ["seed", "num"]) $(id).addEventListener("change", runGrid);
    $("truncation").addEventListener("input", () => { $("truncation-value").textContent = $("truncation").value; });
    $("truncation").addEventListener("change", runGrid);
    $("cutoff").addEventListener("input", () => { $("cutoff-value").textContent = $("cutoff").value; });
    $("cutoff").addEventListener("change", runGrid);
    $("grid-button").addEventListener("click", runGrid);
    if (sigs.style_mix) {
      if (!state.numWs) {   // the server refuses a crossover past its layer count and names it
        const m = await boundsProbe("style_mix", {seed_a: 0, seed_b: 1, num: 1, truncation: 1.0, crossover: 1 << 30}, /\[0, (\d+)\]/);
        if (m) state.numWs = parseInt(m[1], 10);
      }
      if (state.numWs) $("crossover").max = String(state.numWs);
      $("mix-section").classList.remove("hidden");
      for (const id of ["seed-a", "seed-b", "mix-num", "crossover"]) $(id).addEventListener("change", runMix);
      $("crossover").addEventListener("input", () => { $("crossover-value").textContent = $("crossover").value; });
      $("mix-button").addEventListener("click", runMix);
    }
  }
  $("status").textContent = `kind: ${state.kind || "unknown"}; ${Object.keys(sigs).filter((n) => !n.startsWith("__")).length} signatures`;
  document.body.dataset.kind = state.kind || "unknown";
  if (sigs.sample) await runGrid();
  if (sigs.style_mix) await runMix();
  document.body.dataset.ready = "1";
}

// -- actions ---------------------------------------------------------------------------------------
function gridRequest() {
  const base = {num: int("num"), seed: int("seed"), truncation: num("truncation")};
  const edits = state.editNames.map((n) => parseFloat($("edit-" + n).value));
  if (state.editNames.length && edits.some((v) => v !== 0)) {
    return ["edit_sample", {...base, attribute: state.editNames, strength: edits}];
  }
  if (state.kind === "conditional") {
    return ["sample", {...base, attributes: state.attributeNames.map((n) => parseFloat($("attr-" + n).value))}];
  }
  if (state.numWs !== null && int("cutoff") !== state.numWs) {
    return ["sample_cutoff", {...base, truncation_cutoff: int("cutoff")}];
  }
  return ["sample", base];
}
async function runGrid() {
  showError("");
  const [signature, inputs] = gridRequest();
  const t0 = performance.now(), token = state.gridToken = (state.gridToken || 0) + 1;
  try {
    const images = output(await predict(signature, inputs), "images");
    if (token !== state.gridToken) return;     // a later request owns the grid
    show("grid", images);
    $("grid").dataset.request = JSON.stringify({signature, inputs});
    $("grid-time").textContent = `${signature}: ${Math.round(performance.now() - t0)} ms`;
  } catch (e) { showError(e); }
}
async function runMix() {
  showError("");
  const base = {seed_a: int("seed-a"), seed_b: int("seed-b"), num: int("mix-num"), truncation: num("truncation")};
  const cut = state.numWs !== null && int("cutoff") !== state.numWs;
  const signature = cut ? "style_mix_cutoff" : "style_mix";
  const extra = cut ? {truncation_cutoff: int("cutoff")} : {};
  const ALL = state.numWs;   // crossover = the layer count: every layer takes seed A's styles
  const token = state.mixToken = (state.mixToken || 0) + 1;
  try {
    const rows = [["mix-a", ALL], ["mix", int("crossover")], ["mix-b", 0]].map(([id, crossover]) => [id, {...base, crossover, ...extra}]);
    const results = await Promise.all(rows.map(([, inputs]) => predict(signature, inputs)));
    if (token !== state.mixToken) return;
    rows.forEach(([id, inputs], i) => { show(id, output(results[i], "images")); $(id).dataset.request = JSON.stringify({signature, inputs}); });
  } catch (e) { showError(e); }
}
function pixels(canvas) {
  const s = canvas.width, d = canvas.getContext("2d").getImageData(0, 0, s, s).data, rows = [];
  for (let y = 0; y < s; y++) { const row = []; for (let x = 0; x < s; x++) { const k = 4 * (y * s + x); row.push([d[k], d[k + 1], d[k + 2]]); } rows.push(row); }
  return rows;
}
async function runTranslate() {
  showError("");
  const file = $("upload").files[0];
  if (!file) return;
  setBusy(1);
  try {
    const bitmap = await createImageBitmap(file);
    const side = Math.min(bitmap.width, bitmap.height), s = state.inputSize;
    const c = document.createElement("canvas"); c.width = s; c.height = s;
    const ctx = c.getContext("2d"); ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, s, s);
    const input = pixels(c);
    show("translate-input", [input]);
    const signature = $("direction").value, token = state.translateToken = (state.translateToken || 0) + 1;
    const result = output(await predict(signature, {images: [input]}), "images");
    if (token !== state.translateToken) return;
    show("translate-output", result);
    $("translate-output").dataset.request = JSON.stringify({signature});
  } catch (e) { showError(e); } finally { setBusy(-1); }
}
discover().catch((e) => { showError(e); $("status").textContent = "could not read the model"; document.body.dataset.ready = "error"; });
</script>
</body></html>
"""


def render_page(model: str) -> bytes:
    return PAGE.replace("__MODEL__", model).encode("utf-8")


def _make_handler(rest_base: str, model: str):
    page = render_page(model)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log.debug("ui: " + fmt, *args)

        def _send(self, code: int, body: bytes, content_type: str):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, message: str):
            self._send(code, json.dumps({"error": message}).encode("utf-8"), "application/json")

        def _proxy(self, method: str):
            # Only the page's own model: the proxy is not an open relay to the REST server.
            prefix = f"/v1/models/{model}"
            if not (self.path == prefix or self.path.startswith(prefix + "/") or self.path.startswith(prefix + ":")):
                return self._error(404, f"unknown path {self.path}")
            body = None
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    return self._error(413, f"request body of {length} bytes is too large")
                body = self.rfile.read(length)
            req = urllib.request.Request(rest_base + self.path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=PROXY_TIMEOUT_S) as r:
                    return self._send(r.status, r.read(), r.headers.get("Content-Type", "application/json"))
            except urllib.error.HTTPError as e:      # the server's own status and error body
                return self._send(e.code, e.read(), e.headers.get("Content-Type", "application/json"))
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                return self._error(502, f"REST server {rest_base} unreachable: {reason}")

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                return self._send(200, page, "text/html; charset=utf-8")
            if self.path.startswith("/v1/"):
                return self._proxy("GET")
            return self._error(404, f"unknown path {self.path}")

        def do_POST(self):
            if self.path.startswith("/v1/"):
                return self._proxy("POST")
            return self._error(404, f"unknown path {self.path}")

    return Handler


class UiServer:
    """The page and the same-origin proxy; port 0 picks a free one (read `.port` after start)."""

    def __init__(self, rest: str, model: str, port: int = 8080, host: str = "127.0.0.1"):
        if not _MODEL_NAME.match(model or ""):
            raise ValueError(f"--model {model!r}: a model name is letters, digits, '.', '_' or '-'")
        target = rest.replace("http://", "").rstrip("/")
        if not re.fullmatch(r"[^/:\s]+:\d{1,5}", target):
            raise ValueError(f"--rest {rest!r}: expected HOST:PORT of a TF Serving REST API (e.g. localhost:8501)")
        self.rest_base, self.model, self.host, self.requested_port = "http://" + target, model, host, port
        self.port: Optional[int] = None
        self._http: Optional[ThreadingHTTPServer] = None

    def start(self) -> "UiServer":
        self._http = ThreadingHTTPServer((self.host, self.requested_port), _make_handler(self.rest_base, self.model))
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="facegan-ui", daemon=True).start()
        return self

    def stop(self):
        if self._http:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


EXAMPLES = """example:
  facegan serve --model_base_path models/faces --model_name faces --rest_api_port 8501
  facegan ui --rest localhost:8501 --model faces --port 8080     # then open http://localhost:8080/"""


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--rest", required=True, help="HOST:PORT of a TF Serving REST API (facegan serve or TF Serving)")
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--port", type=int, default=8080, help="port of the page (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to reach it from other machines)")


def main(args) -> int:
    try:
        server = UiServer(args.rest, args.model, args.port, args.host)
        server.start()
    except (ValueError, OSError) as e:
        print(f"facegan ui: {e}")
        return 2
    try:   # say up front when the REST server is not there; the page would show the same error
        with urllib.request.urlopen(f"{server.rest_base}/v1/models/{args.model}", timeout=10) as r:
            r.read()
    except urllib.error.HTTPError as e:
        print(f"facegan ui: warning: {server.rest_base} answered HTTP {e.code} for model {args.model!r}")
    except (urllib.error.URLError, OSError) as e:
        print(f"facegan ui: warning: REST server {server.rest_base} unreachable ({getattr(e, 'reason', e)}); "
              "the page will show the error until it answers")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"facegan ui: model {args.model} at {server.rest_base}; open {server.url} (Ctrl-C to stop)", flush=True)
    stop.wait()
    server.stop()
    return 0

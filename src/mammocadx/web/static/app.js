// mammocadx reader page: plain JavaScript, no build step, nothing fetched from the internet.
// Coordinates sent to the server are always full-resolution image pixels (x from the left,
// y from the top), whatever size the image is displayed at.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file-input"), stage: $("stage"), drop: $("dropzone"), wrap: $("canvas-wrap"),
    img: $("preview"), canvas: $("overlay"), form: $("roi-form"), analyse: $("analyse"),
    cx: $("roi-cx"), cy: $("roi-cy"), r: $("roi-r"), bx: $("roi-x"), by: $("roi-y"), bw: $("roi-w"), bh: $("roi-h"),
    circleSet: $("roi-circle"), boxSet: $("roi-box"), modeHint: $("mode-hint"), meta: $("image-meta"),
    error: $("error"), status: $("status"), result: $("result"), label: $("label"),
    score: $("score-value"), threshold: $("threshold-value"), gaugeMarker: $("gauge-marker"),
    gaugeThreshold: $("gauge-threshold"), roiImg: $("roi-img"), camImg: $("cam-img"), camNote: $("cam-note"),
    download: $("download-report"), modelTag: $("model-tag"),
    cardId: $("card-id"), cardVersion: $("card-version"), cardUse: $("card-use"), cardLimits: $("card-limits"),
    cardJson: $("card-json"), cardCreated: $("card-created"), cardTraining: $("card-training"), camOnImage: $("cam-on-image"),
  };

  const state = {
    image: null,        // ImageInfo from /api/image
    roi: null,          // {cx,cy,r} or {x,y,w,h} in image pixels
    crop: null,         // [cx, cy, side] of the square the model cut
    report: null,
    drag: null,         // {x0, y0, x1, y1} in image pixels while dragging
    camImage: null,     // decoded Grad-CAM overlay, drawn back on the mammogram in its crop square
    busy: false,
    requestSeq: 0,
    maxUpload: null,    // bytes, from /healthz: bigger files are refused before they are sent
  };

  // ---------- helpers ----------
  const mode = () => document.querySelector('input[name="mode"]:checked').value;
  const fmt = (v, d = 2) => (v >= 0 ? "+" : "\u2212") + Math.abs(v).toFixed(d);
  const round1 = (v) => Math.round(v * 10) / 10;
  const fmtBytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : (n / 1024).toFixed(1) + " kB");

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }

  function setStatus(text, busy = false) {
    el.status.textContent = text;
    el.status.classList.toggle("busy", busy);
  }

  async function callApi(url, options) {
    let resp;
    try {
      resp = await fetch(url, options);
    } catch (err) {
      throw new Error("The server cannot be reached (" + err.message + "). Is 'mammocadx serve' still running?");
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (!resp.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
        : resp.statusText;
      const err = new Error(detail + " (HTTP " + resp.status + ")");
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  // ---------- model card ----------
  function renderText(target, value) {
    target.textContent = "";
    if (value === null || value === undefined || value === "") { target.textContent = "Not stated in the model card."; return; }
    if (Array.isArray(value)) {
      const ul = document.createElement("ul");
      for (const item of value) {
        const li = document.createElement("li");
        li.textContent = typeof item === "string" ? item : JSON.stringify(item);
        ul.appendChild(li);
      }
      target.appendChild(ul);
    } else if (typeof value === "object") {
      target.textContent = JSON.stringify(value, null, 1);
    } else {
      target.textContent = String(value);
    }
  }

  async function loadModel() {
    try {
      const card = await callApi("/api/model");
      const id = card.id || card.model_id || card.name || "unnamed model";
      el.cardId.textContent = id;
      const madeWith = (card.software && card.software.mammocadx) || card.mammocadx_version;
      el.cardVersion.textContent = card.version ||
        (madeWith ? "not stated (made with mammocadx " + madeWith + ")" : "not stated");
      el.cardCreated.textContent = card.created || card.created_utc || "–";
      const td = card.training_data || card.training || {};
      const n = td.n_lesions ?? td.n_samples;
      el.cardTraining.textContent = n === undefined ? "–" : n + " lesions" +
        (td.n_malignant !== undefined ? " (" + td.n_malignant + " malignant)" : "") +
        (td.n_patients !== undefined ? ", " + td.n_patients + " patients" : "") +
        (td.dataset ? ", " + td.dataset : "");
      el.modelTag.textContent = "model: " + id + (card.version ? " v" + card.version : "");
      renderText(el.cardUse, card.intended_use);
      renderText(el.cardLimits, card.limitations);
      el.cardJson.textContent = JSON.stringify(card, null, 2);
    } catch (err) {
      showError("Could not read the model card: " + err.message);
    }
  }

  // ---------- upload ----------
  async function upload(file) {
    if (!file) return;
    showError("");
    if (state.maxUpload && file.size > state.maxUpload) {
      showError(file.name + ": too large (" + fmtBytes(file.size) + "; the limit is " + fmtBytes(state.maxUpload) + ").");
      el.file.value = "";
      return;
    }
    setStatus("Reading " + file.name + "…", true);
    const form = new FormData();
    form.append("file", file, "upload");  // the server never uses the client's file name
    try {
      const info = await callApi("/api/image", { method: "POST", body: form });
      // Only a good file replaces the case on screen; a bad one leaves the previous case as it was.
      state.requestSeq++;
      state.image = info; state.roi = null; state.crop = null; state.report = null; state.camImage = null;
      el.result.hidden = true;
      el.analyse.disabled = true;
      el.img.onload = () => { el.drop.hidden = true; el.wrap.hidden = false; resizeCanvas(); };
      el.img.src = "data:image/png;base64," + info.preview_png;
      el.drop.hidden = true;
      el.wrap.hidden = false;
      el.meta.textContent = file.name + " · " + info.format.toUpperCase() + " · " + info.width + " × " + info.height +
        " px · " + info.bit_depth + "-bit · SHA-256 " + info.sha256.slice(0, 12) + "…";
      setStatus(mode() === "circle" ? "Click the centre of the lesion, or drag out its radius."
        : "Drag a box around the lesion.");
      el.r.max = Math.max(info.width, info.height);
      // A click's default radius: 4 % of the image's longer side (about a mini-MIAS mass at 1024 px).
      el.r.value = Math.max(4, Math.round(0.04 * Math.max(info.width, info.height)));
      draw();
    } catch (err) {
      setStatus(state.image ? "The previous image is still open." : "Open a mammogram to begin.");
      showError(file.name + ": " + err.message);
    } finally {
      el.file.value = "";
    }
  }

  el.file.addEventListener("change", () => upload(el.file.files[0]));
  el.drop.addEventListener("click", () => el.file.click());
  el.stage.addEventListener("dragover", (e) => { e.preventDefault(); el.stage.classList.add("dragover"); });
  el.stage.addEventListener("dragleave", () => el.stage.classList.remove("dragover"));
  el.stage.addEventListener("drop", (e) => {
    e.preventDefault();
    el.stage.classList.remove("dragover");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });

  // ---------- coordinates and drawing ----------
  function toImage(evt) {
    // Map a pointer position on the displayed image to full-resolution image pixels.
    const rect = el.img.getBoundingClientRect();
    const sx = state.image.width / rect.width, sy = state.image.height / rect.height;
    const x = Math.min(Math.max(evt.clientX - rect.left, 0), rect.width - 0.001) * sx;
    const y = Math.min(Math.max(evt.clientY - rect.top, 0), rect.height - 0.001) * sy;
    return { x, y };
  }

  function resizeCanvas() {
    const rect = el.img.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    el.canvas.width = Math.round(rect.width * dpr);
    el.canvas.height = Math.round(rect.height * dpr);
    draw();
  }
  window.addEventListener("resize", resizeCanvas);

  function draw() {
    const ctx = el.canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    if (!state.image) return;
    const k = el.canvas.width / state.image.width;  // canvas pixels per image pixel
    const dpr = window.devicePixelRatio || 1;
    ctx.lineWidth = 2 * dpr;
    if (state.crop && state.camImage && el.camOnImage.checked && !state.drag) {
      const [cx, cy, side] = state.crop;
      ctx.globalAlpha = 0.7;
      ctx.drawImage(state.camImage, (cx - side / 2) * k, (cy - side / 2) * k, side * k, side * k);
      ctx.globalAlpha = 1;
    }
    if (state.crop) {  // the square the model actually cut (with its context margin)
      const [cx, cy, side] = state.crop;
      ctx.setLineDash([6 * dpr, 5 * dpr]);
      ctx.strokeStyle = "rgba(120, 200, 230, 0.9)";
      ctx.strokeRect((cx - side / 2) * k, (cy - side / 2) * k, side * k, side * k);
      ctx.setLineDash([]);
    }
    const roi = state.drag ? dragRoi(state.drag) : state.roi;
    if (!roi) return;
    ctx.strokeStyle = "#ffd24a";
    ctx.shadowColor = "rgba(0,0,0,0.7)";
    ctx.shadowBlur = 3 * dpr;
    if ("r" in roi) {
      ctx.beginPath();
      ctx.arc(roi.cx * k, roi.cy * k, Math.max(roi.r * k, 2 * dpr), 0, 2 * Math.PI);
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(roi.cx * k - 6 * dpr, roi.cy * k); ctx.lineTo(roi.cx * k + 6 * dpr, roi.cy * k);
      ctx.moveTo(roi.cx * k, roi.cy * k - 6 * dpr); ctx.lineTo(roi.cx * k, roi.cy * k + 6 * dpr);
      ctx.stroke();
    } else {
      ctx.strokeRect(roi.x * k, roi.y * k, roi.w * k, roi.h * k);
    }
    ctx.shadowBlur = 0;
  }

  function dragRoi(d) {
    if (mode() === "box") {
      const x = Math.min(d.x0, d.x1), y = Math.min(d.y0, d.y1);
      return { x: round1(x), y: round1(y), w: round1(Math.max(Math.abs(d.x1 - d.x0), 1)), h: round1(Math.max(Math.abs(d.y1 - d.y0), 1)) };
    }
    const r = Math.hypot(d.x1 - d.x0, d.y1 - d.y0);
    return { cx: round1(d.x0), cy: round1(d.y0), r: round1(Math.max(r, 1)) };
  }

  function displayDistance(d) {
    const rect = el.img.getBoundingClientRect();
    return Math.hypot(d.x1 - d.x0, d.y1 - d.y0) * rect.width / state.image.width;
  }

  el.canvas.addEventListener("pointerdown", (e) => {
    if (!state.image || e.button !== 0) return;
    e.preventDefault();
    el.canvas.setPointerCapture(e.pointerId);
    const p = toImage(e);
    state.drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  });
  el.canvas.addEventListener("pointermove", (e) => {
    if (!state.drag) return;
    const p = toImage(e);
    state.drag.x1 = p.x; state.drag.y1 = p.y;
    draw();
  });
  el.canvas.addEventListener("pointerup", (e) => {
    if (!state.drag) return;
    const d = state.drag;
    const p = toImage(e);
    d.x1 = p.x; d.y1 = p.y;
    state.drag = null;
    const isClick = displayDistance(d) < 5;
    let roi;
    if (isClick) {
      // A click marks the centre; the radius is the one in the form (or, for a box, a square of that radius).
      const r = Math.max(parseFloat(el.r.value) || 40, 1);
      roi = mode() === "box" ? { x: round1(d.x0 - r), y: round1(d.y0 - r), w: round1(2 * r), h: round1(2 * r) }
        : { cx: round1(d.x0), cy: round1(d.y0), r: round1(r) };
    } else {
      roi = dragRoi(d);
    }
    setRoi(roi);
    analyse();
  });
  el.canvas.addEventListener("pointercancel", () => { state.drag = null; draw(); });

  el.camOnImage.addEventListener("change", draw);

  function setRoi(roi) {
    state.roi = roi;
    state.crop = null;
    state.camImage = null;
    if ("r" in roi) {
      el.cx.value = roi.cx; el.cy.value = roi.cy; el.r.value = roi.r;
    } else {
      el.bx.value = roi.x; el.by.value = roi.y; el.bw.value = roi.w; el.bh.value = roi.h;
    }
    el.analyse.disabled = !state.image;
    draw();
  }

  function roiFromForm() {
    const v = (input) => parseFloat(input.value);
    if (mode() === "box") {
      const roi = { x: v(el.bx), y: v(el.by), w: v(el.bw), h: v(el.bh) };
      return Object.values(roi).every(Number.isFinite) ? roi : null;
    }
    const roi = { cx: v(el.cx), cy: v(el.cy), r: v(el.r) };
    return Object.values(roi).every(Number.isFinite) ? roi : null;
  }

  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      const box = mode() === "box";
      el.boxSet.hidden = !box;
      el.circleSet.hidden = box;
      el.modeHint.textContent = box ? "Drag a box around the lesion." : "Click the lesion centre, or drag out its radius.";
      state.roi = roiFromForm();
      draw();
    });
  }
  for (const input of [el.cx, el.cy, el.r, el.bx, el.by, el.bw, el.bh]) {
    input.addEventListener("input", () => {
      const roi = roiFromForm();
      if (roi) { state.roi = roi; state.crop = null; state.camImage = null; draw(); }
      el.analyse.disabled = !state.image || !roi;
    });
  }
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const roi = roiFromForm();
    if (!roi) { showError("Enter the lesion position and size as numbers (image pixels)."); return; }
    setRoi(roi);
    analyse();
  });

  // ---------- prediction ----------
  async function analyse() {
    if (!state.image || !state.roi) return;
    const seq = ++state.requestSeq;
    showError("");
    setStatus("Analysing the lesion…", true);
    el.analyse.disabled = true;
    try {
      const out = await callApi("/api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image_id: state.image.image_id, roi: state.roi, explain: true }),
      });
      if (seq !== state.requestSeq) return;  // a newer mark superseded this request
      showResult(out);
      setStatus("Done in " + Math.round(out.elapsed_ms) + " ms. Mark again to re-analyse.");
    } catch (err) {
      if (seq !== state.requestSeq) return;
      setStatus("");
      showError(err.message);
      if (err.status === 404) { state.image = null; }
    } finally {
      if (seq === state.requestSeq) el.analyse.disabled = !state.image;
    }
  }

  function showResult(out) {
    state.crop = out.crop;
    state.report = out.report;
    el.result.hidden = false;
    const malignant = out.label === "malignant";
    el.label.dataset.label = out.label;
    el.label.textContent = malignant ? "Malignant side of the operating point" : "Benign side of the operating point";
    el.score.textContent = fmt(out.score);
    el.threshold.textContent = fmt(out.threshold);
    // Gauge: a symmetric scale around the operating point, wide enough to show the score.
    const span = Math.max(2, Math.abs(out.score - out.threshold) * 1.25);
    const pos = (v) => 50 + 50 * Math.max(-1, Math.min(1, (v - out.threshold) / span));
    el.gaugeThreshold.style.left = "50%";
    el.gaugeMarker.style.left = pos(out.score) + "%";
    el.roiImg.src = "data:image/png;base64," + out.roi_png;
    state.camImage = null;
    if (out.cam_png) {
      const cam = new Image();
      cam.onload = () => { state.camImage = cam; draw(); };
      cam.src = "data:image/png;base64," + out.cam_png;
      el.camImg.src = cam.src;
      el.camImg.hidden = false;
      el.camNote.textContent = "Warm colours mark the regions that pushed the score towards malignant.";
    } else {
      el.camImg.removeAttribute("src");
      el.camNote.textContent = "No heat-map: " + (out.explain_error || "not computed.");
    }
    draw();
  }

  el.download.addEventListener("click", () => {
    if (!state.report) return;
    const blob = new Blob([JSON.stringify(state.report, null, 2) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    const stamp = state.report.created_utc.replace(/[:+]/g, "").replace(/\..*$/, "");
    a.href = URL.createObjectURL(blob);
    a.download = "mammocadx-report-" + state.report.input.sha256.slice(0, 12) + "-" + stamp + ".json";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  });

  callApi("/healthz").then((h) => { state.maxUpload = h.max_upload_bytes; }).catch(() => {});
  loadModel();
})();

// mammocadx reader page: plain JavaScript, no build step, nothing fetched from the internet.
// Coordinates sent to the server are always full-resolution image pixels (x from the left,
// y from the top), whatever zoom the image is displayed at.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file-input"), file2: $("file-input-2"), open2: $("open-second"), stage: $("stage"), drop: $("dropzone"),
    form: $("roi-form"),
    analyse: $("analyse"), cx: $("roi-cx"), cy: $("roi-cy"), r: $("roi-r"), bx: $("roi-x"), by: $("roi-y"),
    bw: $("roi-w"), bh: $("roi-h"), circleSet: $("roi-circle"), boxSet: $("roi-box"), meta: $("image-meta"),
    error: $("error"), status: $("status"), result: $("result"), resultTitle: $("result-title"), label: $("label"),
    score: $("score-value"), threshold: $("threshold-value"), gaugeMarker: $("gauge-marker"),
    gaugeThreshold: $("gauge-threshold"), roiImg: $("roi-img"), roiCaption: $("roi-caption"), camImg: $("cam-img"),
    camNote: $("cam-note"), download: $("download-report"), downloadHtml: $("download-html"), modelTag: $("model-tag"),
    cardId: $("card-id"), cardVersion: $("card-version"), cardUse: $("card-use"), cardLimits: $("card-limits"),
    cardJson: $("card-json"), cardCreated: $("card-created"), cardTraining: $("card-training"),
    camOnImage: $("cam-on-image"), camOpacity: $("cam-opacity"), invert: $("invert"), magnifier: $("magnifier"), preset: $("wl-preset"),
    zoomFit: $("zoom-fit"), zoom1: $("zoom-1"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"),
    zoomLevel: $("zoom-level"), wlReadout: $("wl-readout"), marksCard: $("marks-card"), marks: $("marks"),
    stability: $("stability"), stabilityRows: $("stability-rows"), stabilityNote: $("stability-note"),
    performance: $("performance"), performanceText: $("performance-text"),
    probabilityBox: $("probability-box"), probability: $("probability-value"), answerNote: $("answer-note"),
    oodNote: $("ood-note"), oodReasons: $("ood-reasons"), downloadSr: $("download-sr"), downloadSc: $("download-sc"),
  };

  const MIN_RADIUS = 2;
  // One viewer per view (the first image, and an optional second view of the same breast side by side).
  const makeView = (idx, canvas) => ({
    idx, canvas,
    image: null,        // ImageInfo from /api/image (null when none)
    name: "",           // the file's name, shown on this computer only
    gone: false,        // the server evicted the image (404): its marks cannot be analysed until it is opened again
    view: { scale: 1, ox: 0, oy: 0 },   // screen (CSS px) = o + image px * scale
    wl: { c: 127.5, w: 255 },          // window over the preview's grey levels
    preset: 0, invert: false,
    src: null,          // Uint8ClampedArray of the preview's grey levels
    base: null,         // offscreen canvas: the preview after window/level and invert
    baseData: null,
  });
  const views = [makeView(0, $("view")), makeView(1, $("view2"))];
  const state = {
    active: 0,          // the view the toolbar and the form act on
    marks: [],          // {n, v (view index), roi, status: pending|done|failed, out, error, camImage, showHeat}
    current: null,      // the mark whose result the card shows
    nextMark: 1,
    seq: 0,             // request counter: only the newest request may show its outcome
    drag: null,         // a gesture in progress
    pointer: null,      // {v, x, y} for the magnifier
    shown: null,        // the mark whose result is on the card
    card: {},
    maxUpload: null,
  };
  const A = () => views[state.active];
  const open = () => views.filter((v) => v.image);

  // ---------- helpers ----------
  const mode = () => document.querySelector('input[name="mode"]:checked').value;
  const fmt = (v, d = 2) => (v >= 0 ? "+" : "\u2212") + Math.abs(v).toFixed(d);
  const round1 = (v) => Math.round(v * 10) / 10;
  const fmtBytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : (n / 1024).toFixed(1) + " kB");
  const side = (score, thr) => (score > thr ? "above" : "at or below");
  // Issue 16: the calibrated probability, the conformal "uncertain" and the out-of-distribution flag, in neutral words.
  const probText = (p) => (p === null || p === undefined ? "" : p.toFixed(2));
  const UNCERTAIN = "The model does not call this lesion: at its stated coverage both benign and malignant remain " +
    "possible (conformal set with both classes).";
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

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
      const e = new Error("The server cannot be reached (" + err.message + "). Is 'mammocadx serve' still running?");
      e.status = 0;
      throw e;
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (!resp.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
        : resp.statusText;
      const err = new Error(detail + " (HTTP " + resp.status + ")");
      err.status = resp.status;
      err.code = body && body.error;
      err.detail = detail;
      throw err;
    }
    return body;
  }

  // What a failed analysis means for the reader, in words.
  function describe(err) {
    switch (err.status) {
      case 0: return err.message;
      case 404: return "The server no longer has this image (it keeps only the most recent ones and forgets them " +
        "when it restarts). Open the image again to go on.";
      case 413: return "Refused as too large: " + err.detail;
      case 422: return "The mark was refused: " + err.detail;
      case 503: return "The server is busy: " + err.detail;
      case 504: return "The analysis took too long and was abandoned: " + err.detail;
      default: return "The analysis failed: " + err.message;
    }
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

  function performanceText(card) {
    const m = card && card.metrics;
    if (!m || typeof m !== "object") return "";
    const parts = [];
    const num = (v) => (typeof v === "number" ? v.toFixed(3) : null);
    const auc = m.auc;
    if (auc !== undefined) {
      let t = "AUC " + (typeof auc === "object" ? (num(auc.mean) || "?") + (auc.sd !== undefined ? " ± " + num(auc.sd) : "") : num(auc));
      const ci = m.auc_ci95 || m.auc_ci;
      if (Array.isArray(ci) && ci.length === 2) t += " (95 % CI " + num(ci[0]) + "–" + num(ci[1]) + ")";
      parts.push(t);
    }
    for (const k of ["sensitivity", "specificity"]) {
      const v = m[k];
      if (v !== undefined) parts.push(k + " " + (typeof v === "object" ? num(v.mean) : num(v)));
    }
    if (m.protocol) parts.push(String(m.protocol));
    return parts.join("; ");
  }

  async function loadModel() {
    try {
      const card = await callApi("/api/model");
      state.card = card;
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
  async function upload(file, target) {
    const input = target === 0 ? el.file : el.file2;
    if (!file) return;
    showError("");
    if (state.maxUpload && file.size > state.maxUpload) {
      showError(file.name + ": too large (" + fmtBytes(file.size) + "; the limit is " + fmtBytes(state.maxUpload) + ").");
      input.value = "";
      return;
    }
    setStatus("Reading " + file.name + "…", true);
    const form = new FormData();
    form.append("file", file, "upload");  // the server never uses the client's file name
    try {
      const info = await callApi("/api/image", { method: "POST", body: form });
      await openImage(views[target], info, file.name);
    } catch (err) {
      setStatus(views[0].image ? "The previous image is still open." : "Open a mammogram to begin.");
      showError(file.name + ": " + err.message);
    } finally {
      input.value = "";
    }
  }

  function viewName(v) {
    const where = v.image ? [v.image.laterality, v.image.view].filter(Boolean).join(" ") : "";
    return where || "view " + (v.idx + 1);
  }

  async function openImage(v, info, name) {
    const img = new Image();
    img.src = "data:image/png;base64," + info.preview_png;
    await img.decode();
    // Only a good file replaces what is on screen; a bad one leaves the case as it was.
    state.seq++;
    if (v.idx === 0) {  // a new first image is a new case: the second view and every mark go
      views[1].image = null;
      views[1].canvas.hidden = true;
      el.stage.classList.remove("two");
      state.marks = [];
      state.nextMark = 1;
    } else {
      state.marks = state.marks.filter((m) => m.v !== 1);
    }
    state.current = null;
    v.image = info; v.name = name; v.gone = false;
    const c = document.createElement("canvas");
    c.width = info.preview_width; c.height = info.preview_height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, c.width, c.height);
    v.src = new Uint8ClampedArray(c.width * c.height);
    for (let i = 0; i < v.src.length; i++) v.src[i] = rgba.data[4 * i];
    v.base = c;
    v.baseData = rgba;
    v.invert = false;
    clearResult();
    renderMarks();
    el.drop.hidden = true;
    v.canvas.hidden = false;
    el.stage.classList.toggle("two", !!views[1].image);
    el.open2.hidden = false;
    activate(v.idx);
    applyPreset(v, 0);
    setStatus(mode() === "box" ? "Drag a box around the lesion." : "Click the centre of the lesion, or drag out its radius.");
    // A click's default radius: 4 % of the image's longer side (about a mini-MIAS mass at 1024 px).
    el.r.value = Math.max(MIN_RADIUS, Math.round(0.04 * Math.max(info.width, info.height)));
    for (const w of open()) { resize(w); fit(w); }
  }

  // The toolbar and the form act on the active view (outlined when two are open).
  function activate(i) {
    state.active = i;
    const v = A();
    for (const w of views) w.canvas.classList.toggle("active", w.idx === i && !!views[1].image);
    el.preset.textContent = "";
    for (const [k, w] of (v.image.windows || [{ name: "As read", center: 127.5, width: 255 }]).entries()) {
      const opt = document.createElement("option");
      opt.value = String(k); opt.textContent = w.name;
      el.preset.appendChild(opt);
    }
    el.preset.value = String(v.preset);
    el.invert.checked = v.invert;
    const info = v.image;
    const where = [info.laterality, info.view].filter(Boolean).join(" ");
    el.meta.textContent = (views[1].image ? viewName(v) + ": " : "") + v.name + " · " + info.format.toUpperCase() +
      " · " + info.width + " × " + info.height + " px · " + info.bit_depth + "-bit" + (where ? " · " + where : "") +
      (info.pixel_spacing_mm ? " · " + info.pixel_spacing_mm[1] + " mm/px" : "") +
      " · SHA-256 " + info.sha256.slice(0, 12) + "…";
    el.r.max = Math.max(info.width, info.height) / 2;
    el.wlReadout.textContent = wlText(v);
    el.analyse.disabled = v.gone;
  }

  el.file.addEventListener("change", () => upload(el.file.files[0], 0));
  el.file2.addEventListener("change", () => upload(el.file2.files[0], 1));
  el.drop.addEventListener("click", () => el.file.click());
  el.stage.addEventListener("dragover", (e) => { e.preventDefault(); el.stage.classList.add("dragover"); });
  el.stage.addEventListener("dragleave", () => el.stage.classList.remove("dragover"));
  el.stage.addEventListener("drop", (e) => {
    e.preventDefault();
    el.stage.classList.remove("dragover");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0], 0);
  });

  // ---------- window / level ----------
  const wlText = (v) => "W " + Math.round(v.wl.w) + " · L " + Math.round(v.wl.c) + (v.invert ? " · inverted" : "");

  function applyPreset(v, i) {
    const w = (v.image.windows || [])[i] || { center: 127.5, width: 255 };
    v.wl = { c: w.center, w: w.width };
    v.preset = i;
    if (v === A()) el.preset.value = String(i);
    renderBase(v);
  }

  function renderBase(v) {
    if (!v.src) return;
    const lut = new Uint8ClampedArray(256);
    const lo = v.wl.c - v.wl.w / 2;
    for (let g = 0; g < 256; g++) {
      const y = Math.max(0, Math.min(255, Math.round(((g - lo) / v.wl.w) * 255)));
      lut[g] = v.invert ? 255 - y : y;
    }
    const d = v.baseData.data, s = v.src;
    for (let i = 0, j = 0; i < s.length; i++, j += 4) {
      const y = lut[s[i]];
      d[j] = y; d[j + 1] = y; d[j + 2] = y; d[j + 3] = 255;
    }
    v.base.getContext("2d").putImageData(v.baseData, 0, 0);
    if (v === A()) { el.wlReadout.textContent = wlText(v); el.wlReadout.hidden = false; }
    drawView(v);
  }

  el.preset.addEventListener("change", () => applyPreset(A(), parseInt(el.preset.value, 10) || 0));
  el.invert.addEventListener("change", () => { A().invert = el.invert.checked; renderBase(A()); });

  // ---------- zoom and pan ----------
  function viewSize(v) {
    const r = v.canvas.getBoundingClientRect();
    return { w: r.width, h: r.height };
  }

  function resize(v) {
    const { w, h } = viewSize(v);
    const dpr = window.devicePixelRatio || 1;
    v.canvas.width = Math.max(1, Math.round(w * dpr));
    v.canvas.height = Math.max(1, Math.round(h * dpr));
    drawView(v);
  }
  window.addEventListener("resize", () => { for (const v of open()) resize(v); });

  function fit(v) {
    if (!v.image) return;
    const { w, h } = viewSize(v);
    const s = Math.min(w / v.image.width, h / v.image.height);
    v.view = { scale: s, ox: (w - v.image.width * s) / 2, oy: (h - v.image.height * s) / 2 };
    drawView(v);
  }

  function zoomAt(v, factor, sx, sy) {
    if (!v.image) return;
    const t = v.view;
    const s = Math.min(Math.max(t.scale * factor, 0.02), 16);
    const ix = (sx - t.ox) / t.scale, iy = (sy - t.oy) / t.scale;
    v.view = { scale: s, ox: sx - ix * s, oy: sy - iy * s };
    drawView(v);
  }

  function zoomTo(v, scale) {
    const { w, h } = viewSize(v);
    zoomAt(v, scale / v.view.scale, w / 2, h / 2);
  }

  el.zoomFit.addEventListener("click", () => fit(A()));
  el.zoom1.addEventListener("click", () => zoomTo(A(), 1 / (window.devicePixelRatio || 1)));
  el.zoomIn.addEventListener("click", () => zoomTo(A(), A().view.scale * 1.5));
  el.zoomOut.addEventListener("click", () => zoomTo(A(), A().view.scale / 1.5));

  // ---------- coordinates and drawing ----------
  function toImage(v, evt) {
    const r = v.canvas.getBoundingClientRect();
    const t = v.view;
    const x = ((evt.clientX - r.left) - t.ox) / t.scale, y = ((evt.clientY - r.top) - t.oy) / t.scale;
    return { x: Math.min(Math.max(x, 0), v.image.width - 0.01), y: Math.min(Math.max(y, 0), v.image.height - 0.01),
      inside: x >= 0 && y >= 0 && x < v.image.width && y < v.image.height };
  }

  function currentMark() { return state.marks.find((m) => m.n === state.current) || null; }

  function niceLength(mm) {
    for (const l of [1, 2, 5, 10, 20, 50, 100, 200]) if (l >= mm) return l;
    return 200;
  }

  function draw() { for (const v of open()) drawView(v); }

  function drawView(v) {
    const ctx = v.canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#101418";
    ctx.fillRect(0, 0, v.canvas.width, v.canvas.height);
    if (!v.image || !v.base) return;
    const t = v.view;
    // What a test (or a script) needs to map image pixels to the screen.
    v.canvas.dataset.scale = String(t.scale); v.canvas.dataset.ox = String(t.ox); v.canvas.dataset.oy = String(t.oy);
    if (v === A()) el.zoomLevel.textContent = Math.round(t.scale * dpr * 100) + " %";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = t.scale * dpr < 2;
    ctx.drawImage(v.base, t.ox, t.oy, v.image.width * t.scale, v.image.height * t.scale);
    const X = (x) => t.ox + x * t.scale, Y = (y) => t.oy + y * t.scale;
    const marks = state.marks.filter((m) => m.v === v.idx);
    // Heat-maps of the marks, at the chosen opacity, in the square each was cut from.
    if (el.camOnImage.checked && !state.drag) {
      ctx.globalAlpha = parseInt(el.camOpacity.value, 10) / 100;
      for (const m of marks) {
        if (m.status === "done" && m.camImage && m.showHeat) {
          const [cx, cy, s] = m.out.crop;
          ctx.drawImage(m.camImage, X(cx - s / 2), Y(cy - s / 2), s * t.scale, s * t.scale);
        }
      }
      ctx.globalAlpha = 1;
    }
    const cur = currentMark();
    if (cur && cur.v === v.idx && cur.status === "done") {  // the square the model actually cut (with its margin)
      const [cx, cy, s] = cur.out.crop;
      ctx.setLineDash([6, 5]);
      ctx.strokeStyle = "rgba(120, 200, 230, 0.9)";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(X(cx - s / 2), Y(cy - s / 2), s * t.scale, s * t.scale);
      ctx.setLineDash([]);
    }
    const shapes = marks.map((m) => ({ roi: m.roi, n: m.n, on: m.n === state.current, failed: m.status === "failed" }));
    if (state.drag && state.drag.kind === "mark" && state.drag.v === v.idx) shapes.push({ roi: dragRoi(state.drag), n: null, on: true });
    ctx.shadowColor = "rgba(0,0,0,0.8)";
    ctx.shadowBlur = 3;
    for (const sh of shapes) {
      const roi = sh.roi;
      ctx.strokeStyle = sh.failed ? "#ff8a65" : sh.on ? "#ffd24a" : "rgba(255, 210, 74, 0.55)";
      ctx.lineWidth = sh.on ? 2 : 1.5;
      let lx, ly;
      if ("r" in roi) {
        ctx.beginPath();
        ctx.arc(X(roi.cx), Y(roi.cy), Math.max(roi.r * t.scale, 2), 0, 2 * Math.PI);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(X(roi.cx) - 5, Y(roi.cy)); ctx.lineTo(X(roi.cx) + 5, Y(roi.cy));
        ctx.moveTo(X(roi.cx), Y(roi.cy) - 5); ctx.lineTo(X(roi.cx), Y(roi.cy) + 5);
        ctx.stroke();
        lx = X(roi.cx + roi.r * 0.72) + 4; ly = Y(roi.cy - roi.r * 0.72) - 4;
      } else {
        ctx.strokeRect(X(roi.x), Y(roi.y), roi.w * t.scale, roi.h * t.scale);
        lx = X(roi.x + roi.w) + 4; ly = Y(roi.y) - 4;
      }
      if (sh.n !== null) {
        ctx.fillStyle = ctx.strokeStyle;
        ctx.font = "600 13px system-ui, sans-serif";
        ctx.fillText("#" + sh.n, lx, ly);
      }
    }
    ctx.shadowBlur = 0;
    drawAnnotations(v, ctx);
    drawLens(v, ctx);
  }

  function drawAnnotations(v, ctx) {
    const { w, h } = viewSize(v);
    const info = v.image;
    ctx.font = "600 18px system-ui, sans-serif";
    ctx.fillStyle = "#e8edf2";
    ctx.shadowColor = "rgba(0,0,0,0.9)";
    ctx.shadowBlur = 4;
    const where = [info.laterality, info.view].filter(Boolean).join(" ");
    if (where) ctx.fillText(where, 12, 26);
    ctx.font = "12px system-ui, sans-serif";
    if (info.pixel_spacing_mm) {
      const mmPerScreenPx = info.pixel_spacing_mm[1] / v.view.scale;
      const mm = niceLength(120 * mmPerScreenPx);
      const len = mm / mmPerScreenPx;
      ctx.fillRect(w - 16 - len, h - 20, len, 3);
      ctx.fillRect(w - 16 - len, h - 26, 2, 9);
      ctx.fillRect(w - 18, h - 26, 2, 9);
      ctx.fillText(mm + " mm", w - 16 - len, h - 30);
    }
    ctx.shadowBlur = 0;
  }

  // A round 3x lens under the pointer (image only, windowed as displayed).
  function drawLens(v, ctx) {
    const p = state.pointer;
    if (!el.magnifier.checked || !p || p.v !== v.idx || (state.drag && state.drag.kind !== "mark")) return;
    const t = v.view, R = 90, k = 3;
    const ix = (p.x - t.ox) / t.scale, iy = (p.y - t.oy) / t.scale;
    const s = t.scale * k;
    ctx.save();
    ctx.beginPath();
    ctx.arc(p.x, p.y, R, 0, 2 * Math.PI);
    ctx.clip();
    ctx.fillStyle = "#101418";
    ctx.fillRect(p.x - R, p.y - R, 2 * R, 2 * R);
    ctx.imageSmoothingEnabled = s * (window.devicePixelRatio || 1) < 2;
    ctx.drawImage(v.base, p.x - ix * s, p.y - iy * s, v.image.width * s, v.image.height * s);
    ctx.restore();
    ctx.strokeStyle = "rgba(232, 237, 242, 0.9)";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(p.x, p.y, R, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function dragRoi(d) {
    if (d.shape === "box") {
      const x = Math.min(d.x0, d.x1), y = Math.min(d.y0, d.y1);
      return { x: round1(x), y: round1(y), w: round1(Math.max(Math.abs(d.x1 - d.x0), 2 * MIN_RADIUS)),
        h: round1(Math.max(Math.abs(d.y1 - d.y0), 2 * MIN_RADIUS)) };
    }
    const r = Math.hypot(d.x1 - d.x0, d.y1 - d.y0);
    return { cx: round1(d.x0), cy: round1(d.y0), r: round1(Math.max(r, MIN_RADIUS)) };
  }

  for (const v of views) {
    const cv = v.canvas;
    cv.addEventListener("contextmenu", (e) => e.preventDefault());
    cv.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = cv.getBoundingClientRect();
      zoomAt(v, Math.pow(1.0015, -e.deltaY), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    cv.addEventListener("pointerdown", (e) => {
      if (!v.image) return;
      e.preventDefault();
      if (state.active !== v.idx) activate(v.idx);
      cv.setPointerCapture(e.pointerId);
      const tool = e.button === 0 ? mode() : "pan";
      if (tool === "pan") {
        state.drag = { kind: "pan", v: v.idx, sx: e.clientX, sy: e.clientY, ox: v.view.ox, oy: v.view.oy };
      } else if (tool === "window") {
        state.drag = { kind: "window", v: v.idx, sx: e.clientX, sy: e.clientY, c: v.wl.c, w: v.wl.w };
      } else {
        const p = toImage(v, e);
        if (!p.inside) return;
        state.drag = { kind: "mark", v: v.idx, shape: tool, x0: p.x, y0: p.y, x1: p.x, y1: p.y, sx: e.clientX, sy: e.clientY };
      }
    });
    cv.addEventListener("pointermove", (e) => {
      const d = state.drag && state.drag.v === v.idx ? state.drag : null;
      if (el.magnifier.checked && v.image) {
        const r = cv.getBoundingClientRect();
        state.pointer = { v: v.idx, x: e.clientX - r.left, y: e.clientY - r.top };
        if (!d) { drawView(v); return; }
      }
      if (!d) return;
      if (d.kind === "pan") {
        v.view.ox = d.ox + (e.clientX - d.sx); v.view.oy = d.oy + (e.clientY - d.sy);
        drawView(v);
      } else if (d.kind === "window") {
        v.wl = { w: Math.min(Math.max(d.w + (e.clientX - d.sx), 1), 1024), c: d.c - (e.clientY - d.sy) };
        renderBase(v);
      } else {
        const p = toImage(v, e);
        d.x1 = p.x; d.y1 = p.y;
        drawView(v);
      }
    });
    cv.addEventListener("pointerup", (e) => {
      const d = state.drag;
      if (!d || d.v !== v.idx) return;
      state.drag = null;
      if (d.kind !== "mark") { drawView(v); return; }
      const p = toImage(v, e);
      d.x1 = p.x; d.y1 = p.y;
      let roi;
      if (Math.hypot(e.clientX - d.sx, e.clientY - d.sy) < 5) {
        // A click marks the centre; the radius is the one in the form (or, for a box, a square of that radius).
        const r = Math.max(parseFloat(el.r.value) || 40, MIN_RADIUS);
        roi = d.shape === "box" ? { x: round1(d.x0 - r), y: round1(d.y0 - r), w: round1(2 * r), h: round1(2 * r) }
          : { cx: round1(d.x0), cy: round1(d.y0), r: round1(r) };
      } else {
        roi = dragRoi(d);
      }
      addMark(v, roi);
    });
    cv.addEventListener("pointercancel", () => { state.drag = null; drawView(v); });
    cv.addEventListener("pointerleave", () => { state.pointer = null; if (el.magnifier.checked) drawView(v); });
  }
  el.magnifier.addEventListener("change", draw);
  el.camOnImage.addEventListener("change", draw);
  el.camOpacity.addEventListener("input", draw);

  // ---------- marks ----------
  function fillForm(roi) {
    if ("r" in roi) {
      el.cx.value = roi.cx; el.cy.value = roi.cy; el.r.value = roi.r;
    } else {
      el.bx.value = roi.x; el.by.value = roi.y; el.bw.value = roi.w; el.bh.value = roi.h;
    }
  }

  function addMark(v, roi) {
    const m = { n: state.nextMark++, v: v.idx, roi, status: "pending", out: null, error: null, camImage: null, showHeat: true };
    state.marks.push(m);
    state.current = m.n;
    fillForm(roi);
    renderMarks();
    draw();
    analyse(m);
  }

  function roiText(roi, v) {
    const mm = v.image && v.image.pixel_spacing_mm ? v.image.pixel_spacing_mm[1] : null;
    if ("r" in roi) return "circle at (" + roi.cx + ", " + roi.cy + "), r " + roi.r + " px" + (mm ? " (" + (roi.r * mm).toFixed(1) + " mm)" : "");
    return "box " + roi.w + " × " + roi.h + " px at (" + roi.x + ", " + roi.y + ")" +
      (mm ? " (" + (roi.w * mm).toFixed(1) + " × " + (roi.h * mm).toFixed(1) + " mm)" : "");
  }

  function renderMarks() {
    el.marks.textContent = "";
    el.marksCard.hidden = state.marks.length === 0;
    for (const m of state.marks) {
      const li = document.createElement("li");
      li.className = "mark" + (m.n === state.current ? " current" : "") + " " + m.status;
      li.dataset.mark = String(m.n);
      const head = document.createElement("button");
      head.type = "button";
      head.className = "mark-select";
      head.textContent = "#" + m.n + " · " + (views[1].image ? viewName(views[m.v]) + " · " : "") + roiText(m.roi, views[m.v]);
      head.addEventListener("click", () => selectMark(m.n));
      const res = document.createElement("span");
      res.className = "mark-result";
      res.textContent = m.status === "pending" ? "analysing…" : m.status === "failed" ? "failed: " + m.error
        : "score " + fmt(m.out.score) + ", " + side(m.out.score, m.out.threshold) + " the operating point";
      li.append(head, res);
      if (m.status === "done" && m.camImage) {
        const t = document.createElement("label");
        t.className = "mark-heat";
        const cb = document.createElement("input");
        cb.type = "checkbox"; cb.checked = m.showHeat;
        cb.addEventListener("change", () => { m.showHeat = cb.checked; draw(); });
        t.append(cb, " heat-map");
        li.append(t);
      }
      const rm = document.createElement("button");
      rm.type = "button"; rm.className = "mark-remove"; rm.textContent = "×"; rm.title = "Remove this mark";
      rm.addEventListener("click", () => removeMark(m.n));
      li.append(rm);
      el.marks.appendChild(li);
    }
  }

  function selectMark(n) {
    state.current = n;
    const m = currentMark();
    if (m && m.v !== state.active) activate(m.v);
    if (m) fillForm(m.roi);
    if (m && m.status === "done") { showResult(m); } else { clearResult(); }
    if (m && m.status === "failed") showError("Mark #" + m.n + ": " + m.error);
    renderMarks();
    draw();
  }

  function removeMark(n) {
    state.marks = state.marks.filter((m) => m.n !== n);
    if (state.current === n) { state.current = null; clearResult(); }
    renderMarks();
    draw();
  }

  // ---------- the form ----------
  function roiFromForm() {
    const v = (input) => (input.value.trim() === "" ? NaN : Number(input.value));
    if (mode() === "box") {
      const roi = { x: v(el.bx), y: v(el.by), w: v(el.bw), h: v(el.bh) };
      if (!Object.values(roi).every(Number.isFinite)) return { error: "Enter the box as numbers (image pixels)." };
      if (roi.w < 2 * MIN_RADIUS || roi.h < 2 * MIN_RADIUS) return { error: "The box must be at least " + 2 * MIN_RADIUS + " pixels wide and high." };
      return { roi };
    }
    const roi = { cx: v(el.cx), cy: v(el.cy), r: v(el.r) };
    if (!Object.values(roi).every(Number.isFinite)) return { error: "Enter the lesion position and radius as numbers (image pixels)." };
    if (roi.r < MIN_RADIUS) return { error: "The radius must be at least " + MIN_RADIUS + " pixels." };
    return { roi };
  }

  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      const m = mode();
      if (m === "box" || m === "circle") {
        el.boxSet.hidden = m !== "box";
        el.circleSet.hidden = m === "box";
      }
      for (const v of views) v.canvas.dataset.tool = m;
    });
  }
  for (const input of [el.cx, el.cy, el.r, el.bx, el.by, el.bw, el.bh]) {
    input.addEventListener("input", () => {
      // Typed numbers are a new ROI: the card of the previous one goes (Analyse scores the new one, or says why not).
      const got = roiFromForm();
      const shown = state.shown && state.shown.roi;
      if (shown && (got.error || JSON.stringify(got.roi) !== JSON.stringify(shown))) {
        clearResult();
        state.current = null;
        renderMarks(); draw();
        setStatus("Press Analyse to score the typed ROI.");
      }
    });
  }
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!A().image) return;
    const got = roiFromForm();
    if (got.error) {
      clearResult();  // whatever is on the card belongs to another ROI than the one typed
      state.current = null;
      renderMarks(); draw();
      showError(got.error);
      return;
    }
    addMark(A(), got.roi);
  });

  // ---------- prediction ----------
  function clearResult() {
    el.result.hidden = true;
    el.label.textContent = ""; el.label.dataset.label = "";
    el.score.textContent = "–"; el.threshold.textContent = "–";
    el.probability.textContent = "–"; el.probabilityBox.hidden = true;
    el.answerNote.hidden = true; el.oodNote.hidden = true; el.oodReasons.textContent = "";
    el.downloadSr.hidden = true; el.downloadSc.hidden = true;
    el.roiImg.removeAttribute("src"); el.camImg.removeAttribute("src");
    el.download.disabled = true; el.downloadHtml.disabled = true;
    state.shown = null;
  }

  async function analyse(m) {
    clearResult();
    showError("");
    const v = views[m.v];
    if (v.gone) {
      m.status = "failed"; m.error = "the server no longer has this image";
      renderMarks();
      showError(describe({ status: 404 }));
      return;
    }
    const seq = ++state.seq;
    const image = v.image;
    setStatus("Analysing mark #" + m.n + "…", true);
    el.analyse.disabled = true;
    try {
      const out = await callApi("/api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image_id: image.image_id, roi: m.roi, explain: true, stability: true }),
      });
      if (image !== v.image) return;  // another image was opened meanwhile
      m.out = out; m.status = "done";
      if (out.cam_png) {
        const cam = new Image();
        cam.src = "data:image/png;base64," + out.cam_png;
        await cam.decode().catch(() => null);
        m.camImage = cam;
      }
      renderMarks();
      if (seq !== state.seq || state.current !== m.n) { drawView(v); return; }  // a newer request owns the card
      showResult(m);
      setStatus("Mark #" + m.n + " done in " + Math.round(out.elapsed_ms) + " ms. Mark again to add a lesion.");
    } catch (err) {
      if (image !== v.image) return;
      m.status = "failed"; m.error = err.status === 404 ? "the server no longer has this image" : (err.detail || err.message);
      if (err.status === 404) v.gone = true;
      renderMarks();
      drawView(v);
      if (seq !== state.seq) return;
      setStatus(err.status === 404 ? "Open the image again to go on." : "Mark #" + m.n + " was not analysed.");
      showError(describe(err));
    } finally {
      if (seq === state.seq) el.analyse.disabled = !A().image || A().gone;
    }
  }

  function showResult(m) {
    const out = m.out;
    state.shown = m;
    el.result.hidden = false;
    el.resultTitle.textContent = "Result for mark #" + m.n + (views[1].image ? " (" + viewName(views[m.v]) + ")" : "");
    const above = out.score > out.threshold;
    el.label.dataset.label = above ? "above" : "below";
    el.label.textContent = above ? "Score above the operating point (the model leans malignant)"
      : "Score at or below the operating point (the model leans benign)";
    el.score.textContent = fmt(out.score);
    el.threshold.textContent = fmt(out.threshold);
    el.probability.textContent = probText(out.probability) || "–";
    el.probabilityBox.hidden = out.probability === null || out.probability === undefined;
    el.answerNote.textContent = out.answer === "uncertain" ? UNCERTAIN : "";
    el.answerNote.hidden = out.answer !== "uncertain";
    el.oodReasons.textContent = "";
    for (const why of out.ood_reasons || []) {
      const li = document.createElement("li"); li.textContent = why; el.oodReasons.appendChild(li);
    }
    el.oodNote.hidden = !out.ood;
    const span = Math.max(2, Math.abs(out.score - out.threshold) * 1.25);
    const pos = (v) => 50 + 50 * Math.max(-1, Math.min(1, (v - out.threshold) / span));
    el.gaugeThreshold.style.left = "50%";
    el.gaugeMarker.style.left = pos(out.score) + "%";
    // Stability: the same centre at nearby sizes.
    el.stabilityRows.textContent = "";
    if (out.stability && out.stability.length) {
      for (const p of out.stability) {
        const tr = document.createElement("tr");
        if (p.scale === 1) tr.className = "marked";
        for (const t of ["× " + p.scale.toFixed(1), fmt(p.score), side(p.score, out.threshold)]) {
          const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
        }
        el.stabilityRows.appendChild(tr);
      }
      const sides = new Set(out.stability.map((p) => p.score > out.threshold));
      el.stabilityNote.textContent = sides.size === 1
        ? "The side of the operating point is the same at all " + out.stability.length + " sizes."
        : "The side of the operating point changes with the ROI size: treat this result as uncertain.";
      el.stability.hidden = false;
    } else {
      el.stability.hidden = true;
    }
    const perf = performanceText(state.card);
    el.performanceText.textContent = perf;
    el.performance.hidden = !perf;
    el.roiImg.src = "data:image/png;base64," + out.roi_png;
    el.roiCaption.textContent = out.roi_colour === "grey" ? "grey ROI" : "Pseudocolour ROI";
    if (out.cam_png) {
      el.camImg.src = "data:image/png;base64," + out.cam_png;
      el.camNote.textContent = "Warm colours mark the regions that pushed the score towards malignant.";
    } else {
      el.camImg.removeAttribute("src");
      el.camNote.textContent = "No heat-map: " + (out.explain_error || "not computed.");
    }
    el.download.disabled = false; el.downloadHtml.disabled = false;
    // A DICOM upload also gets its SR and Grad-CAM Secondary Capture (files the server wrote for this result).
    for (const [a, kind] of [[el.downloadSr, "sr"], [el.downloadSc, "gradcam"]]) {
      const url = out.dicom_files && out.dicom_files[kind];
      if (url) a.href = url; else a.removeAttribute("href");
      a.hidden = !url;
    }
    draw();
  }

  function save(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function reportName(report, ext) {
    const stamp = report.created_utc.replace(/[:+]/g, "").replace(/\..*$/, "");
    return "mammocadx-report-" + report.input.sha256.slice(0, 12) + "-" + stamp + "." + ext;
  }

  el.download.addEventListener("click", () => {
    const m = state.shown;
    if (!m) return;
    save(new Blob([JSON.stringify(m.out.report, null, 2) + "\n"], { type: "application/json" }), reportName(m.out.report, "json"));
  });

  // The image around the mark as displayed (window, invert), for the printable report.
  function keyImage(m) {
    const v = views[m.v];
    const [cx, cy, s] = m.out.crop;
    const k = v.base.width / v.image.width;
    const half = Math.max(s, 0.25 * Math.max(v.image.width, v.image.height)) / 2;
    const x0 = Math.max(0, (cx - half) * k), y0 = Math.max(0, (cy - half) * k);
    const w = Math.min(v.base.width - x0, 2 * half * k), h = Math.min(v.base.height - y0, 2 * half * k);
    const c = document.createElement("canvas");
    const out = 360 / Math.max(w, h);
    c.width = Math.round(w * out); c.height = Math.round(h * out);
    const ctx = c.getContext("2d");
    ctx.drawImage(v.base, x0, y0, w, h, 0, 0, c.width, c.height);
    ctx.strokeStyle = "#ffd24a"; ctx.lineWidth = 2;
    const sx = (x) => (x * k - x0) * out, sy = (y) => (y * k - y0) * out;
    const roi = m.roi;
    if ("r" in roi) { ctx.beginPath(); ctx.arc(sx(roi.cx), sy(roi.cy), roi.r * k * out, 0, 2 * Math.PI); ctx.stroke(); }
    else ctx.strokeRect(sx(roi.x), sy(roi.y), roi.w * k * out, roi.h * k * out);
    return c.toDataURL("image/png");
  }

  el.downloadHtml.addEventListener("click", () => {
    const m = state.shown;
    if (!m) return;
    const out = m.out, rep = out.report;
    const rows = (out.stability || []).map((p) => "<tr><td>× " + p.scale.toFixed(1) + "</td><td>" + esc(fmt(p.score)) +
      "</td><td>" + esc(side(p.score, out.threshold)) + "</td></tr>").join("");
    const perf = performanceText(state.card);
    const html = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mammocadx case report</title>" +
      "<style>body{font:14px/1.45 system-ui,sans-serif;color:#1d2733;max-width:780px;margin:24px auto;padding:0 16px}" +
      "h1{font-size:20px}h2{font-size:15px;margin-top:18px}table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:3px 8px;text-align:left}" +
      ".imgs{display:flex;gap:12px;flex-wrap:wrap}.imgs figure{margin:0}.imgs img{height:220px;border:1px solid #ccd}" +
      ".notice{border:1px solid #e2c56b;background:#fff6dc;padding:8px 10px}@media print{body{margin:0}}</style></head><body>" +
      "<h1>mammocadx case report</h1><p class=\"notice\">" + esc(rep.notice) + "</p>" +
      "<h2>Image</h2><p>" + esc(views[m.v].name) + " · " + esc(viewName(views[m.v])) + " · " + esc(rep.input.format.toUpperCase()) + " · " + rep.input.width + " × " +
      rep.input.height + " px · SHA-256 " + esc(rep.input.sha256) + "</p>" +
      "<h2>Region of interest (mark #" + m.n + ")</h2><p>" + esc(roiText(m.roi, views[m.v])) + "; square cut: centre (" +
      rep.roi.crop.cx + ", " + rep.roi.crop.cy + "), side " + rep.roi.crop.side + " px (" + esc(rep.roi.units) + ")</p>" +
      "<div class=\"imgs\"><figure><img alt=\"image around the mark\" src=\"" + keyImage(m) + "\"><figcaption>the image around the mark</figcaption></figure>" +
      "<figure><img alt=\"ROI\" src=\"data:image/png;base64," + out.roi_png + "\"><figcaption>" + (out.roi_colour === "grey" ? "grey ROI" : "pseudocolour ROI") + "</figcaption></figure>" +
      (out.cam_png ? "<figure><img alt=\"Grad-CAM\" src=\"data:image/png;base64," + out.cam_png + "\"><figcaption>Grad-CAM of the decision</figcaption></figure>" : "") +
      "</div><h2>Result</h2><p>Score " + esc(fmt(out.score)) + ", " + esc(side(out.score, out.threshold)) + " the model's operating point (" +
      esc(fmt(out.threshold)) + "). The score is a decision value, not a probability of cancer.</p>" +
      (probText(out.probability) ? "<p>Calibrated probability of malignancy " + esc(probText(out.probability)) +
        " (calibrated on out-of-sample scores of the training lesions; not a diagnosis).</p>" : "") +
      (out.answer === "uncertain" ? "<p>" + esc(UNCERTAIN) + "</p>" : "") +
      (out.ood ? "<p class=\"notice\">Unlike the training images; the result may not apply: " +
        esc((out.ood_reasons || []).join("; ")) + "</p>" : "") +
      (rows ? "<table><tr><th>ROI size</th><th>score</th><th>side of the operating point</th></tr>" + rows + "</table>" : "") +
      "<h2>Model</h2><p>" + esc(rep.model.id || "unnamed") + (rep.model.version ? " v" + esc(rep.model.version) : "") +
      (rep.model.created ? " · created " + esc(rep.model.created) : "") + "</p>" + (perf ? "<p>Validated performance: " + esc(perf) + "</p>" : "") +
      "<p>Report made " + esc(rep.created_utc) + " by " + esc(rep.software) + ".</p></body></html>";
    save(new Blob([html], { type: "text/html" }), reportName(rep, "html"));
  });

  callApi("/healthz").then((h) => { state.maxUpload = h.max_upload_bytes; }).catch(() => {});
  loadModel();
  clearResult();
})();

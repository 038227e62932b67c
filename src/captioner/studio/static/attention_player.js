// The studio's attention player (gr.HTML js_on_load: `element`, `props`, `trigger`, `watch` are given).
// props.value (made by captioner.studio.photos_tab / video_tab from captioner.studio.player):
//   {kind: "photos" | "shot" | "item", nonce, message, engine_s, low, high (null: no "likely right" band),
//    read_only, title, no_copy,
//    photos: [{key, index, name, width, height, error, beam, tags: [{label, score}], confidence,
//              warnings: [...], photo: {src, w, h, squeezed, aspect},
//              candidates: [{caption, words, score, per_token, confidence,
//                            attention: {n, m, words, levels (base64, words x n x m bytes)}}],
//              saved: {id, caption, edited} | null, chosen (the candidate shown first; default 0)}]}
// ("item": a saved gallery photo, from captioner.studio.library_render.item_view; no_copy: no Copy button)
// Everything is drawn here, on canvases: the photo once, each word's map laid over it.
// Events sent to the server (indexes into the session's own list, never a file):
//   trigger('submit', {choices: [{photo, candidate, text}]})  save (one photo or all)
//   trigger('download', {photo, candidate})                    the animation as a GIF
// The Caption tab's player also captions one photo itself (window.captionerCaptionNow, called by the Caption
// button): it sends the token the server gave this page for the photo in the file box (never a path) to the
// studio's own route (captioner.studio.photos_tab.DIRECT_ROUTE) and draws the answer at once.
(() => {
  const root = element;
  const MS_PER_WORD = 800, MIN_A = 0.25, MAX_A = 0.6, DIM = 0.35, UP = 8;
  const TURBO = [[48, 18, 59], [64, 64, 162], [70, 107, 227], [66, 148, 255], [40, 188, 235], [24, 221, 194],
    [50, 242, 152], [109, 254, 98], [164, 252, 60], [205, 236, 52], [238, 207, 58], [253, 172, 52],
    [251, 126, 33], [235, 80, 14], [208, 47, 5], [169, 22, 1], [122, 4, 3]];
  const turbo = (l) => {
    const x = Math.min(1, Math.max(0, l)) * (TURBO.length - 1), i = Math.min(TURBO.length - 2, Math.floor(x)), f = x - i;
    return [0, 1, 2].map((c) => TURBO[i][c] + (TURBO[i + 1][c] - TURBO[i][c]) * f);
  };
  const esc = (s) => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const pct = (c) => (c === null || c === undefined ? null : Math.round(100 * c));
  const h = (tag, cls, html) => { const e = document.createElement(tag); if (cls) e.className = cls; if (html !== undefined) e.innerHTML = html; return e; };

  const S = {data: null, nonce: null, sel: 0, choice: {}, saved: {}, word: 0, playing: true, timer: null,
    hover: null, images: {}, layers: {}, drawnAt: null};
  window.captionerPlayers = window.captionerPlayers || {};
  window.captionerClick = window.captionerClick || null;
  if (!window.captionerClickHooked) {  // when Caption was pressed, to report the time the user waited
    window.captionerClickHooked = true;
    document.addEventListener("click", (e) => {
      const b = e.target && e.target.closest ? e.target.closest("#caption-button, #video-caption-button") : null;
      if (b) { window.captionerClick = {at: performance.now(), id: b.id}; }
    }, true);
  }

  // ---------------------------------------------------------------- data helpers
  const photos = () => (S.data && Array.isArray(S.data.photos) ? S.data.photos : []);
  const cur = () => photos()[S.sel] || null;
  const choiceOf = (p) => S.choice[p.key] || (S.choice[p.key] = {cand: Number.isInteger(p.chosen) && p.candidates[p.chosen] ? p.chosen : 0, text: null});
  const textOf = (p) => { const c = choiceOf(p); return c.text !== null ? c.text : ((p.candidates[c.cand] || {}).caption || ""); };
  const edited = (p) => { const c = choiceOf(p); return c.text !== null && c.text !== (p.candidates[c.cand] || {}).caption; };
  const savedOf = (p) => S.saved[p.key] || p.saved || null;
  const unsaved = () => photos().filter((p) => !p.error && p.candidates.length &&
    !(savedOf(p) && savedOf(p).caption === textOf(p).trim().split(/\s+/).join(" ")));

  // the overlay's colour and opacity for each level 0-255, as captioner.viz.attention blends them:
  // out = photo * (1 - DIM * (1 - l)) * (1 - a) + turbo(l) * a, with a = MIN_A + (MAX_A - MIN_A) * l
  const LUT = (() => {
    const t = new Uint8ClampedArray(256 * 4);
    for (let v = 0; v < 256; v++) {
      const l = v / 255, a = MIN_A + (MAX_A - MIN_A) * l, A = 1 - (1 - DIM * (1 - l)) * (1 - a), col = turbo(l);
      t[4 * v] = col[0] * a / A; t[4 * v + 1] = col[1] * a / A; t[4 * v + 2] = col[2] * a / A; t[4 * v + 3] = 255 * A;
    }
    return t;
  })();

  function layer(p, j, w) {  // word w's RGBA overlay (a canvas), upsampled smoothly from its n x m levels
    const key = p.key + "/" + j + "/" + w;
    if (S.layers[key] !== undefined) { return S.layers[key]; }
    const att = (p.candidates[j] || {}).attention;
    if (!att || w < 0 || w >= att.words) { return (S.layers[key] = null); }
    if (!att.bytes) { const raw = atob(att.levels); att.bytes = new Uint8Array(raw.length); for (let i = 0; i < raw.length; i++) { att.bytes[i] = raw.charCodeAt(i); } }
    const n = att.n, m = att.m || att.n, W = m * UP, H = n * UP, base = w * n * m, b = att.bytes;
    const lv = (r, c) => b[base + (r < 0 ? 0 : r >= n ? n - 1 : r) * m + (c < 0 ? 0 : c >= m ? m - 1 : c)];
    const cv = document.createElement("canvas"); cv.width = W; cv.height = H;
    const ctx = cv.getContext("2d"), img = ctx.createImageData(W, H), d = img.data;
    for (let y = 0; y < H; y++) {
      const fy = (y + 0.5) / UP - 0.5, r0 = Math.floor(fy), ty = fy - r0;
      for (let x = 0; x < W; x++) {
        const fx = (x + 0.5) / UP - 0.5, c0 = Math.floor(fx), tx = fx - c0;
        const v = Math.round((lv(r0, c0) * (1 - tx) + lv(r0, c0 + 1) * tx) * (1 - ty) + (lv(r0 + 1, c0) * (1 - tx) + lv(r0 + 1, c0 + 1) * tx) * ty);
        const o = 4 * (y * W + x), q = 4 * v;
        d[o] = LUT[q]; d[o + 1] = LUT[q + 1]; d[o + 2] = LUT[q + 2]; d[o + 3] = LUT[q + 3];
      }
    }
    ctx.putImageData(img, 0, 0);
    return (S.layers[key] = cv);
  }

  function photoImage(p, then) {  // the photo, decoded once per photo (off the main thread): the still frames
    let im = S.images[p.key];
    if (!im) { im = S.images[p.key] = new Image(); im.src = p.photo.src; im.ready = im.decode().catch(() => null).then(() => im); }
    im.ready.then(then);
  }

  function drawOverlay(canvas, p, j, w) {  // candidate j's map of word w on the heat canvas, laid over the photo's <img>
    const over = layer(p, j, w);
    if (canvas.width !== p.photo.w || canvas.height !== p.photo.h) { canvas.width = p.photo.w; canvas.height = p.photo.h; }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (over) { ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high"; ctx.drawImage(over, 0, 0, canvas.width, canvas.height); }
    canvas.dataset.word = String(w);
    canvas.dataset.drawn = String((Number(canvas.dataset.drawn) || 0) + 1);
  }

  function drawOn(canvas, p, j, w) {  // photo p, candidate j, word w (null: the clean photo), in one picture (still frames)
    const W = p.photo.w, H = p.photo.h, dpr = Math.min(2, window.devicePixelRatio || 1);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    photoImage(p, (im) => {
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
      ctx.drawImage(im, 0, 0, canvas.width, canvas.height);
      const over = w === null ? null : layer(p, j, w);
      if (over) { ctx.drawImage(over, 0, 0, canvas.width, canvas.height); }
      canvas.dataset.word = w === null ? "" : String(w);
      canvas.dataset.drawn = String((Number(canvas.dataset.drawn) || 0) + 1);
    });
  }
  // fn once the selected photo's pictures are loaded (the attention overlay is drawn at once; the photos are
  // <img decoding="sync">: a loaded one is in the next paint) and painted: checked at each animation frame,
  // fn runs in the task after the frame (its style, layout and paint are done by then)
  function whenDrawn(fn) {
    const check = () => {
      const ready = [...root.querySelectorAll(".pv-detail img")].every((im) => im.complete);
      if (ready) { setTimeout(fn, 0); } else { requestAnimationFrame(check); }
    };
    requestAnimationFrame(check);
  }
  function afterPaint(fn) { requestAnimationFrame(() => setTimeout(fn, 0)); }

  // ---------------------------------------------------------------- the player of the selected photo
  function stopTimer() { if (S.timer) { clearInterval(S.timer); S.timer = null; } }
  function showWord(w) {
    const p = cur(); if (!p) { return; }
    const j = choiceOf(p).cand, cand = p.candidates[j], n = cand && cand.attention ? cand.attention.words : 0;
    const canvas = root.querySelector(".pv-heat"); if (!canvas || !n) { return; }
    w = ((w % n) + n) % n;
    drawOverlay(canvas, p, j, w);
    const word = cand.words[w] || "";
    root.querySelector(".pv-word").textContent = word;
    root.querySelector(".pv-count").textContent = (w + 1) + " / " + n;
    root.querySelectorAll(".pv-chip").forEach((c) => c.classList.toggle("on", Number(c.dataset.w) === w));
    canvas.setAttribute("aria-label", "Where the model looked for the word “" + word + "”");
  }
  function setWord(w) { S.word = w; showWord(w); }
  function play(on) {
    S.playing = on; stopTimer();
    const b = root.querySelector(".pv-play");
    if (b) { b.textContent = on ? "❚❚ Pause" : "▶ Play"; b.setAttribute("aria-pressed", on ? "true" : "false"); }
    const p = cur(), cand = p && p.candidates[choiceOf(p).cand];
    const n = cand && cand.attention ? cand.attention.words : 0;
    if (on && n > 1) { S.timer = setInterval(() => { if (S.hover === null) { setWord((S.word + 1) % n); } }, MS_PER_WORD); }
  }

  function playerHtml(p, j) {
    const cand = p.candidates[j] || {}, att = cand.attention;
    const ratio = p.photo.w + " / " + p.photo.h;
    const note = p.photo.squeezed
      ? `<div class="pv-note">Shown squeezed: the photo is ${p.width}×${p.height} px (${(p.photo.aspect >= 1 ? p.photo.aspect.toFixed(0) + ":1" : "1:" + (1 / p.photo.aspect).toFixed(0))}); the model squashes it to a square too.</div>` : "";
    if (!att) {
      return `<div class="pv-panels"><figure class="pv-panel"><div class="pv-stage" style="aspect-ratio:${ratio}"><img class="pv-clean" alt="${esc(p.name)}" decoding="sync" src="${p.photo.src}"></div></figure></div>${note}<div class="pv-note">No attention maps for this caption.</div>`;
    }
    const chips = cand.words.slice(0, att.words).map((w, i) => `<button type="button" class="pv-chip" data-w="${i}" title="Hover or click: where the model looked for “${esc(w)}”">${esc(w)}</button>`).join("");
    return `<div class="pv-panels">
      <figure class="pv-panel"><div class="pv-stage" style="aspect-ratio:${ratio}"><img class="pv-clean" alt="${esc(p.name)}" decoding="sync" src="${p.photo.src}"></div><figcaption>The photo</figcaption></figure>
      <figure class="pv-panel"><div class="pv-stage" style="aspect-ratio:${ratio}"><img class="pv-under" alt="" decoding="sync" src="${p.photo.src}"><canvas class="pv-heat" role="img" tabindex="0" title="← → step through the words, space plays or pauses"></canvas>
        <div class="pv-band"><span class="pv-word"></span><span class="pv-count"></span></div></div>
        <figcaption>Where the model looked for each word (red: most)</figcaption></figure></div>${note}
      <div class="pv-controls"><button type="button" class="pv-prev" title="Previous word">◀ Step</button>
        <button type="button" class="pv-play" aria-pressed="true">❚❚ Pause</button>
        <button type="button" class="pv-next" title="Next word">Step ▶</button>
        <button type="button" class="pv-gif" title="The animation as a GIF file (drawn on the server)">⤓ Animation (GIF)</button></div>
      <div class="pv-chips" role="toolbar" aria-label="Words of the caption">${chips}</div>
      <details class="pv-strip"><summary>Still frames (${att.words} words)</summary><div class="pv-frames"></div></details>`;
  }

  // A confidence badge.  Its colour says only what the calibration can: "low" under `low`; green ("likely
  // right") only above `high`, a threshold the model's calibration holds on everyday photos as well as on
  // Flickr8k (none today: the badge is then neutral); a caption the user edited has no model badge at all.
  function confBadge(c, low) {
    const v = pct(c);
    if (v === null) { return ""; }
    const high = S.data ? S.data.high : null;
    const isLow = low !== null && low !== undefined && c < low;
    const isHigh = !isLow && high !== null && high !== undefined && c >= high;
    const title = "The model's own estimate that its caption is right, calibrated on Flickr8k photos"
      + " (people, dogs, sports); on other photos it is often wrong";
    return `<span class="pv-conf${isLow ? " low" : isHigh ? " high" : ""}" title="${title}">${isLow ? "⚠ low confidence " : "confidence "}${v}%</span>`;
  }
  const EDITED_BADGE = '<span class="pv-conf none" title="The model scored its own captions, not yours">your caption: no model score</span>';
  // What the model knows, in plain words, under the results (its confidence cannot tell its own mistakes apart)
  const KNOWS = `<p class="pv-knows">This model learned from Flickr8k: about 8,000 photos of everyday scenes with
    <b>people, dogs, children playing and sports</b>. It knows little of food, objects, indoor scenes, other animals,
    art or text: there its captions are often wrong, and its confidence does not warn you. Check each caption.</p>`;

  function cardsHtml(p) {
    const j = choiceOf(p).cand, low = S.data.low;
    return p.candidates.map((c, i) => `<button type="button" class="pv-card${i === j ? " on" : ""}${i === 0 ? " best" : ""}" data-c="${i}" aria-pressed="${i === j}">
        <span class="pv-rank">#${i + 1}${i === 0 ? ' <span class="pv-best">best</span>' : ""}</span>
        <span class="pv-caption">${esc(c.caption)}</span>
        <span class="pv-scores">${confBadge(c.confidence, low)}${c.score !== null ? ` <span title="summed log-probability">log p ${c.score.toFixed(2)}</span>` : ""}${c.per_token !== null ? ` · <span title="log-probability per token">per token ${c.per_token.toFixed(2)}</span>` : ""}</span></button>`).join("");
  }

  function detailHtml(p) {
    const meta = [p.width && p.height ? `${p.width}×${p.height} px` : "", p.beam ? `beam ${p.beam}` : ""].filter(Boolean).join(" · ");
    const yours = p.saved && p.saved.edited && S.data.kind === "item";
    const badge = S.data.kind === "photos" ? `<span class="pv-head-conf">${headBadge(p)}</span>` : (yours ? EDITED_BADGE : confBadge(p.confidence, S.data.low));
    const head = `<div class="pv-head"><span class="pv-name">${esc(p.name)}</span><span class="pv-meta">${esc(meta)}</span>${badge}</div>`;
    if (p.error) { return head + `<div class="studio-error">${esc(p.error)}</div>`; }
    const tags = p.tags && p.tags.length ? `<div class="pv-tags" aria-label="What the model sees">${p.tags.map((t) => `<span class="pv-tag" title="${t.score === null ? "" : Math.round(100 * t.score) + "%"}">${esc(t.label)}</span>`).join("")}</div>` : "";
    const warns = p.warnings && p.warnings.length ? `<ul class="pv-warnings">${p.warnings.map((w) => `<li>⚠️ ${esc(w)}</li>`).join("")}</ul>` : "";
    const c = choiceOf(p);
    const saveBox = S.data.kind === "photos" ? `<div class="pv-edit">
        <label class="pv-label" for="pv-text-${esc(p.key)}">Caption to save (edit it if you like; kept until saved)</label>
        <textarea id="pv-text-${esc(p.key)}" class="pv-text" rows="2" maxlength="500">${esc(textOf(p))}</textarea>
        <div class="pv-edit-note"></div>
        <div class="pv-actions"><button type="button" class="pv-copy">Copy caption</button>
          ${S.data.read_only ? "" : `<button type="button" class="pv-save">Save this photo</button><button type="button" class="pv-save-all primary">Save all</button>`}</div>
        <div class="pv-save-msg" role="status"></div></div>` : `${S.data.no_copy ? "" : '<div class="pv-actions"><button type="button" class="pv-copy">Copy caption</button></div>'}<textarea class="pv-text" hidden readonly>${esc(textOf(p))}</textarea>`;
    const savedLine = yours ? `<div class="pv-saved-caption"><span class="pv-label">Saved caption (your edit)</span>
        <span class="pv-caption">${esc(p.saved.caption)}</span><span class="pv-label">The model's candidates:</span></div>` : "";
    return head + tags + warns + `<div class="pv-body"><div class="pv-player">${playerHtml(p, c.cand)}</div>
      <div class="pv-side">${savedLine}<div class="pv-cards" role="list">${cardsHtml(p)}</div>${saveBox}${S.data.kind === "shot" ? "" : KNOWS}</div></div>`;
  }

  function tileHtml(p, i) {
    const sv = savedOf(p), ed = !p.error && edited(p);
    const status = p.error ? '<span class="pv-flag err">⚠ not captioned</span>'
      : (sv ? `<span class="pv-flag ok">✓ saved #${sv.id}</span>` : "") + (ed ? '<span class="pv-flag ed">✎ edited</span>' : "")
        + (p.warnings && p.warnings.length ? `<span class="pv-flag warn" title="${esc(p.warnings.join("; "))}">⚠ ${p.warnings.length}</span>` : "");
    const caption = p.error ? esc(p.error) : esc(textOf(p));
    return `<button type="button" class="pv-tile${i === S.sel ? " on" : ""}${p.error ? " err" : ""}" data-i="${i}" aria-pressed="${i === S.sel}">
      <img alt="" src="${p.photo ? p.photo.src : ""}" ${p.photo ? "" : "hidden"}><span class="pv-tile-name">${esc(p.name)}</span>
      <span class="pv-tile-caption">${caption}</span><span class="pv-tile-foot">${p.error || ed ? "" : confBadge(p.candidates.length ? p.candidates[choiceOf(p).cand].confidence : p.confidence, S.data.low)}${status}</span></button>`;
  }
  // The selected photo's badge: the chosen candidate's confidence, none once the user edited the caption
  function headBadge(p) {
    if (p.error) { return ""; }
    if (edited(p)) { return EDITED_BADGE; }
    return confBadge(p.candidates.length ? p.candidates[choiceOf(p).cand].confidence : p.confidence, S.data.low);
  }
  function refreshHead() {
    const p = cur(), el = root.querySelector(".pv-head-conf");
    if (p && el) { el.innerHTML = headBadge(p); }
  }

  function saveAllLabel() {
    const all = root.querySelector(".pv-save-all"), left = unsaved().length;
    if (all) { all.textContent = left ? `Save all (${left})` : "All saved"; all.disabled = !left; }
  }
  function refreshTiles() {
    const ov = root.querySelector(".pv-overview"); if (!ov) { return; }
    ov.innerHTML = photos().map(tileHtml).join("");
    saveAllLabel();
  }

  function editNote() {
    const p = cur(), note = root.querySelector(".pv-edit-note"); if (!p || !note) { return; }
    const c = choiceOf(p), cand = p.candidates[c.cand] || {};
    if (edited(p)) {
      note.innerHTML = `Your edit is kept. <button type="button" class="pv-use">Use #${c.cand + 1}'s caption instead</button>`;
    } else { note.textContent = ""; }
    root.querySelectorAll(".pv-card").forEach((el) => { const on = Number(el.dataset.c) === c.cand; el.classList.toggle("on", on); el.setAttribute("aria-pressed", String(on)); });
    void cand;
  }

  function renderDetail() {
    const p = cur(), box = root.querySelector(".pv-detail"); if (!box) { return; }
    stopTimer();
    box.innerHTML = p ? detailHtml(p) : "";
    S.word = 0;
    if (p && !p.error) { play(S.playing); showWord(0); editNote(); }
    saveAllLabel();
  }

  function select(i) {
    const t0 = performance.now();
    S.sel = i; refreshTiles(); renderDetail();
    requestAnimationFrame(() => requestAnimationFrame(() => { root.dataset.switchMs = String(Math.round(performance.now() - t0)); }));
  }

  function pickCandidate(j) {
    const p = cur(); if (!p) { return; }
    choiceOf(p).cand = j;
    const player = root.querySelector(".pv-player");
    if (player) { stopTimer(); player.innerHTML = playerHtml(p, j); S.word = 0; play(S.playing); showWord(0); }
    const ta = root.querySelector(".pv-text");
    if (ta && !edited(p) && choiceOf(p).text === null) { ta.value = textOf(p); }
    if (ta && choiceOf(p).text !== null && choiceOf(p).text === (p.candidates[j] || {}).caption) { choiceOf(p).text = null; }
    editNote(); refreshHead(); refreshTiles();
  }

  function drawStrip() {
    const p = cur(), box = root.querySelector(".pv-frames"); if (!p || !box || box.childElementCount) { return; }
    const j = choiceOf(p).cand, cand = p.candidates[j];
    cand.words.slice(0, cand.attention.words).forEach((w, i) => {
      const f = h("figure", "pv-frame"), cv = h("canvas"); cv.style.aspectRatio = p.photo.w + " / " + p.photo.h;
      f.appendChild(cv); f.appendChild(h("figcaption", "", `<b>${esc(w)}</b> <span>${i + 1}/${cand.attention.words}</span>`));
      f.dataset.w = String(i); box.appendChild(f); drawOn(cv, p, j, i);
    });
  }

  function copy(text) {
    const done = (ok) => { const b = root.querySelector(".pv-copy"); if (b) { b.textContent = ok ? "Copied ✓" : "Copy failed"; setTimeout(() => { b.textContent = "Copy caption"; }, 1500); } };
    root.dataset.copied = text;
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(() => done(true), () => done(fallback(text))); }
    else { done(fallback(text)); }
  }
  function fallback(text) {
    const ta = h("textarea"); ta.value = text; ta.style.position = "fixed"; ta.style.opacity = "0"; document.body.appendChild(ta); ta.select();
    let ok = false; try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    ta.remove(); return ok;
  }

  function save(which) {
    const list = which === "all" ? unsaved() : [cur()].filter(Boolean);
    const choices = list.map((p) => ({photo: p.index, candidate: choiceOf(p).cand, text: textOf(p)}));
    const msg = root.querySelector(".pv-save-msg");
    if (!choices.length) { if (msg) { msg.textContent = "Nothing new to save."; } return; }
    if (msg) { msg.textContent = `Saving ${choices.length} photo${choices.length === 1 ? "" : "s"}…`; }
    trigger("submit", {choices: choices});
  }

  // ---------------------------------------------------------------- the whole view
  function render(value) {
    const renderAt = performance.now();
    S.data = value && typeof value === "object" ? value : null;
    stopTimer();
    if (!S.data || !photos().length) { root.innerHTML = `<div class="${S.data && S.data.error ? "studio-error" : "studio-empty"}">${esc(S.data && S.data.message ? S.data.message : (S.data && S.data.empty) || "The beam candidates will appear here, best first.")}</div>`; return; }
    if (S.data.nonce !== S.nonce) {  // a new result: new photos keep the edits of the ones that were there
      S.nonce = S.data.nonce; S.layers = {};
      const keys = new Set(photos().map((p) => p.key));
      Object.keys(S.choice).forEach((k) => { if (!keys.has(k)) { delete S.choice[k]; delete S.saved[k]; delete S.images[k]; } });
      const first = photos().findIndex((p) => !p.error);
      S.sel = S.data.selected !== undefined && S.data.selected !== null ? S.data.selected : Math.max(0, first);
    }
    const many = S.data.kind === "photos";
    root.innerHTML = `<div class="pv-root pv-${esc(S.data.kind)}">
      ${many ? `<div class="pv-status" role="status"><span class="pv-message">${esc(S.data.message || "")}</span> <span class="pv-waited"></span></div>` : ""}
      ${many ? `<div class="pv-overview" role="list" aria-label="Every photo">${""}</div>` : ""}
      <div class="pv-detail"></div></div>`;
    if (many) { refreshTiles(); }
    renderDetail();
    const click = window.captionerClick, data = S.data;
    whenDrawn(() => {  // every card on screen and the attention picture drawn, painted
      const waited = root.querySelector(".pv-waited");
      if (S.data !== data) { return; }
      if (click && waited && S.data.kind === "photos" && click.id === "caption-button") {
        const ms = performance.now() - click.at;
        waited.dataset.ms = String(Math.round(ms));
        waited.dataset.drawMs = String(Math.round(performance.now() - renderAt));  // the part spent drawing here
        const engine = S.data.engine_s !== null && S.data.engine_s !== undefined ? `; the engine's part: ${S.data.engine_s.toFixed(1)} s` : "";
        waited.textContent = `You waited ${(ms / 1000).toFixed(1)} s from pressing Caption to these results (measured in this browser${engine}).`;
        window.captionerClick = null;
      }
    });
    root.dataset.nonce = String(S.data.nonce);  // this result's cards are in place (the picture: .pv-heat's data-drawn)
    requestAnimationFrame(() => {
      if (S.data !== data) { return; }
      if (many) {  // the results in view (a phone's screen shows the form above them)
        const target = document.querySelector("#caption-status") || root, r = target.getBoundingClientRect();
        if (r.top < 0 || r.top > window.innerHeight * 0.5) { target.scrollIntoView({block: "start", behavior: "auto"}); }
      }
    });
  }

  root.addEventListener("click", (e) => {
    const t = e.target.closest ? e.target.closest("button, summary") : null;
    if (!t || !root.contains(t)) { return; }
    if (t.classList.contains("pv-tile")) { select(Number(t.dataset.i)); }
    else if (t.classList.contains("pv-card")) { pickCandidate(Number(t.dataset.c)); }
    else if (t.classList.contains("pv-play")) { play(!S.playing); }
    else if (t.classList.contains("pv-prev")) { play(false); setWord(S.word - 1); }
    else if (t.classList.contains("pv-next")) { play(false); setWord(S.word + 1); }
    else if (t.classList.contains("pv-chip")) { play(false); S.hover = null; setWord(Number(t.dataset.w)); }
    else if (t.classList.contains("pv-copy")) { const ta = root.querySelector(".pv-text"); copy(ta ? ta.value : ""); }
    else if (t.classList.contains("pv-save")) { save("one"); }
    else if (t.classList.contains("pv-save-all")) { save("all"); }
    else if (t.classList.contains("pv-use")) { const p = cur(); if (p) { choiceOf(p).text = null; const ta = root.querySelector(".pv-text"); if (ta) { ta.value = textOf(p); } editNote(); refreshHead(); refreshTiles(); } }
    else if (t.classList.contains("pv-gif")) { const p = cur(); if (p) { t.textContent = "⤓ Drawing the GIF…"; setTimeout(() => { t.textContent = "⤓ Animation (GIF)"; }, 3000); trigger("download", {photo: p.index, candidate: choiceOf(p).cand}); } }
    else if (t.tagName === "SUMMARY" && t.parentElement.classList.contains("pv-strip")) { setTimeout(drawStrip, 0); }
  });
  root.addEventListener("keydown", (e) => {  // on the heat map or a word: arrows step, space plays/pauses
    const t = e.target;
    if (!t.classList || !(t.classList.contains("pv-heat") || t.classList.contains("pv-chip"))) { return; }
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") { play(false); setWord(S.word + (e.key === "ArrowRight" ? 1 : -1)); e.preventDefault(); }
    else if (e.key === " " && t.classList.contains("pv-heat")) { play(!S.playing); e.preventDefault(); }
  });
  root.addEventListener("mouseover", (e) => {
    const c = e.target.closest ? e.target.closest(".pv-chip, .pv-frame") : null;
    if (c && root.contains(c) && S.hover !== Number(c.dataset.w)) { S.hover = Number(c.dataset.w); showWord(S.hover); }
  });
  root.addEventListener("mouseout", (e) => {
    const c = e.target.closest ? e.target.closest(".pv-chip, .pv-frame") : null;
    const to = e.relatedTarget && e.relatedTarget.closest ? e.relatedTarget.closest(".pv-chip, .pv-frame") : null;
    if (c && !to && S.hover !== null) { S.hover = null; showWord(S.word); }
  });
  root.addEventListener("input", (e) => {
    if (!e.target.classList || !e.target.classList.contains("pv-text")) { return; }
    const p = cur(); if (!p) { return; }
    const c = choiceOf(p);
    c.text = e.target.value === (p.candidates[c.cand] || {}).caption ? null : e.target.value;
    editNote(); refreshHead();
    const tile = root.querySelector(`.pv-tile[data-i="${S.sel}"]`);
    if (tile) { tile.outerHTML = tileHtml(p, S.sel); }
    saveAllLabel();
  });

  const api = {
    saved(result) {  // the server's answer to a save: mark the photos saved, show its messages
      if (!result || !S.data) { return; }
      const msg = root.querySelector(".pv-save-msg"), lines = [];
      (result.results || []).forEach((r) => {
        const p = photos()[r.photo]; if (!p) { return; }
        if (r.id !== null && r.id !== undefined) { S.saved[p.key] = {id: r.id, caption: r.caption}; }
        lines.push((r.id !== null && r.id !== undefined ? "✅ " : "⚠️ ") + (r.message || r.error || ""));
      });
      if (result.error && !lines.length) { lines.push("⚠️ " + result.error); }
      if ((result.results || []).length > 1 && result.message) { lines.unshift(result.message); }  // "Saved 3 of 3 photos."
      refreshTiles();
      if (msg) { msg.innerHTML = lines.map(esc).join("<br>"); }
    },
    state() { return {sel: S.sel, word: S.word, playing: S.playing, choice: JSON.parse(JSON.stringify(S.choice)), saved: S.saved}; },
    stop() { stopTimer(); },  // put away (the Gallery's item modal closed); the next value plays again
  };
  const register = () => { if (S.data && S.data.kind) { window.captionerPlayers[S.data.kind] = api; } };

  // ---------------------------------------------------------------- the Caption tab: one photo, straight to the server
  if (root.closest && root.closest("#photos-view")) {
    const base = (window.gradio_config && window.gradio_config.root) || location.origin;
    const route = new URL("studio/caption", base.replace(/\/?$/, "/")).href;
    // Caption the photo staged under `token` (the file box's one upload) and draw it; true when drawn, false when
    // the route refused (an expired token, no route): the Gradio event then captions it and says what went wrong
    const send = async (token, beam, maxLen, add) => {
      // a small "Captioning…" badge (shown after 150 ms; one element, nothing else restyled or moved)
      root.insertAdjacentHTML("afterbegin", '<div class="pv-working" role="status"><span>Captioning…</span></div>');
      const seq = (window.captionerStage || {}).seq;
      let answer = null;
      try {
        const res = await fetch(route, {method: "POST", credentials: "same-origin", cache: "no-store",
          headers: {"Content-Type": "application/json"},
          body: JSON.stringify({token: token, beam_size: beam, max_len: maxLen, add: add === true})});
        answer = res.ok ? await res.json() : null;
      } catch (e) { answer = null; }
      root.querySelectorAll(".pv-working").forEach((b) => b.remove());
      if (!answer || !answer.view || answer.view.kind !== "photos") { return false; }
      render(answer.view); register();
      afterPaint(() => {  // once the results are on screen: the file box is emptied (its photo is in the list now,
        // as the Gradio event does; unless another photo was dropped since), Gradio's copy of the value, the
        // status line and the JSON (from the server's list)
        const clear = document.querySelector("#photo-files button[aria-label='Clear']");
        if (clear && (window.captionerStage || {}).seq === seq) { clear.click(); }
        props.value = answer.view;
        const shown = document.querySelector("#caption-shown"); if (shown) { shown.click(); }
      });
      return true;
    };
    const take = () => { const st = window.captionerStage, token = st.token; st.token = ""; st.paths = []; return token; };  // good once
    window.captionerSend = send;
    // From the Caption button's Gradio event (DISPATCH_JS): true when the photo `file` (the file box's value) was
    // captioned and drawn; false when this page has no token for it (the server's stage answer not in after 2 s)
    window.captionerCaptionNow = async (file, beam, maxLen, add) => {
      const st = window.captionerStage, path = file && file.path;
      if (!st || !path) { return false; }
      const same = () => st.token && st.paths.length === 1 && st.paths[0] === path;
      const until = performance.now() + 2000;
      while (!same() && st.waiting > 0 && performance.now() < until) { await new Promise((ok) => setTimeout(ok, 4)); }
      return same() ? send(take(), beam, maxLen, add) : false;
    };
    // The path of the file box's one photo, as its download link shows it (null: not one photo, no link)
    const boxPath = () => {
      const rows = document.querySelectorAll("#photo-files tbody tr"), link = rows.length === 1 ? rows[0].querySelector("a[href*='/file=']") : null;
      try { return link ? decodeURIComponent(link.getAttribute("href").split("/file=").pop()) : null; } catch (e) { return null; }
    };
    // The Caption button itself, before Gradio sees the click: with the token of the photo in the file box in
    // hand (no change since), the page captions it at once; otherwise the click goes on to the Gradio event
    if (!window.captionerCaptionHooked) {
      window.captionerCaptionHooked = true;
      document.addEventListener("click", (e) => {
        const b = e.target && e.target.closest ? e.target.closest("#caption-button") : null, st = window.captionerStage;
        if (!b || !st || !st.token || st.waiting > 0 || st.paths.length !== 1 || !window.captionerSend
            || boxPath() !== st.paths[0]) { return; }
        e.stopPropagation();  // not to the button's Gradio event (other listeners here still see the click)
        const value = (sel) => { const el = document.querySelector(sel); return el ? Number(el.value) : null; };
        const add = document.querySelector("#add-photos input[type=checkbox]");
        window.captionerSend(take(), value("#beam-size input[type=number]"), value("#max-length input[type=number]"),
          !!(add && add.checked)).then((ok) => { if (!ok) { const now = document.querySelector("#caption-now"); if (now) { now.click(); } } });
      }, true);
    }
  }
  watch("value", () => { render(props.value); register(); });
  render(props.value); register();
})();

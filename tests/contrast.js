// WCAG 2 contrast of every visible text on the page against what is behind it (tests/test_studio_newuser.py).
// Returns the texts under the AA minimum: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold).
// The background is found by walking up the element's ancestors, blending their background colours (with
// their opacity); a text over a picture (an ancestor with a background image, or an <img>/<canvas>/<video>
// sibling under it) is checked against both white and black behind its own translucent backgrounds.
// Texts of disabled controls are left out (WCAG: inactive components).
() => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c || "");
    if (!m) { return [0, 0, 0, 0]; }
    const p = m[1].split(/[\s,/]+/).filter(Boolean).map(parseFloat);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {  // top (with alpha) over an opaque colour
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a));
  };
  const lum = (rgb) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const overPicture = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.backgroundImage && s.backgroundImage !== "none" && !/gradient/.test(s.backgroundImage)) { return true; }
      if (e.parentElement && [...e.parentElement.children].some((c) => c !== e && /^(IMG|CANVAS|VIDEO)$/.test(c.tagName))
          && ["absolute", "fixed"].includes(s.position)) { return true; }
    }
    return false;
  };
  // the layers behind el, top first: [colour with alpha] (each ancestor's background times its opacity)
  const layers = (el) => {
    const out = [];
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e), c = parse(s.backgroundColor);
      if (c[3] > 0) { out.push(c); if (c[3] >= 1) { break; } }
    }
    return out;
  };
  const root = parse(getComputedStyle(document.documentElement).backgroundColor);
  const canvas = root[3] > 0 ? root.slice(0, 3) : [255, 255, 255];
  const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) { o *= parseFloat(getComputedStyle(e).opacity); } return o; };
  const bad = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) { continue; }
    const el = n.parentElement;
    if (!el || seen.has(el)) { continue; }
    seen.add(el);
    if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|OPTION)$/.test(el.tagName)) { continue; }
    if (el.closest("[disabled], [aria-disabled='true'], [hidden]")) { continue; }
    const s = getComputedStyle(el);
    if (s.visibility !== "visible" || !el.getClientRects().length) { continue; }
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) { continue; }
    const op = opacity(el);
    if (op < 0.05) { continue; }
    const under = layers(el).reverse();
    const backs = overPicture(el) ? [[255, 255, 255], [0, 0, 0]] : [canvas];
    let worst = Infinity, worstBg = null, fg = null;
    for (const b0 of backs) {
      let bg = b0;
      for (const layer of under) { bg = over(layer, bg); }
      const c = parse(s.color);
      const text = over([c[0], c[1], c[2], c[3] * op], bg);
      const k = ratio(text, bg);
      if (k < worst) { worst = k; worstBg = bg; fg = text; }
    }
    const px = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
    const need = px >= 24 || (bold && px >= 18.66) ? 3 : 4.5;
    if (worst < need - 0.005) {
      const rgb = (x) => "#" + x.map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
      bad.push({text: n.textContent.trim().slice(0, 50), ratio: Math.round(worst * 100) / 100, need,
                fg: rgb(fg), bg: rgb(worstBg), where: (el.id ? "#" + el.id : el.tagName.toLowerCase()) + "." +
                String(el.className || "").split(/\s+/).filter((c) => !/^svelte-/.test(c)).join(".") +
                " < " + (el.closest("[id]") || {id: ""}).id});
    }
  }
  return bad;
}

(s) => {
  if (!s || s.t === null || s.t === undefined || !isFinite(s.t)) { return []; }
  const t = Number(s.t) + 0.001, name = String(s.file || '');
  let tries = 50;
  const seek = () => {
    const v = document.querySelector('#item-player video');
    const src = v ? decodeURIComponent(v.currentSrc || v.src || '') : '';
    if ((!v || !src || (name && !src.endsWith(name))) && tries-- > 0) { setTimeout(seek, 100); return; }
    if (!v) { return; }
    if (v.readyState >= 1) { v.currentTime = t; }
    else { v.addEventListener('loadedmetadata', () => { v.currentTime = t; }, {once: true}); }
  };
  seek();
  return [];
}

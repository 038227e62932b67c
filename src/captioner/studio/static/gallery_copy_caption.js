async () => {
  const box = document.querySelector('#item-details [data-caption]');
  const text = box ? box.dataset.caption : '';
  const button = document.querySelector('#copy-caption');
  const said = (ok) => {
    if (button) { button.dataset.copied = ok ? 'yes' : 'no'; }
    return ok ? '📋 Caption copied to the clipboard.' : '⚠️ The browser did not let the page copy: select the caption and copy it.';
  };
  if (!text) { return said(false); }
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return said(true); } catch (e) { /* fall back below */ }
  }
  const area = document.createElement('textarea');
  area.value = text; area.setAttribute('readonly', ''); area.style.position = 'fixed'; area.style.opacity = '0';
  document.body.appendChild(area); area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
  area.remove();
  return said(ok);
}

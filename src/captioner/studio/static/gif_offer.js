(file) => {
  const view = document.querySelector('#VIEW_ID'), button = view ? view.querySelector('.pv-gif') : null;
  if (view) { view.querySelectorAll('.pv-gif-link').forEach((a) => a.remove()); }
  if (!file || !file.url || !button) { return []; }
  const name = file.orig_name || 'attention.gif', kb = file.size ? ' (' + Math.max(1, Math.round(file.size / 1024)) + ' KB)' : '';
  const a = document.createElement('a');
  a.className = 'pv-gif-link'; a.href = file.url; a.download = name; a.textContent = '⤓ ' + name + kb;
  a.title = 'The animation as a GIF file (downloaded; click to download it again)';
  button.textContent = '⤓ Animation (GIF)';
  button.insertAdjacentElement('afterend', a);
  a.click();
  return [];
}

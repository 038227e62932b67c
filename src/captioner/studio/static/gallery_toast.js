(msg) => {
  clearTimeout(window.captionerToastTimer);
  if (!msg) { return []; }
  document.body.classList.add('gallery-toast-open');
  const undo = /Deleted/.test(msg);
  window.captionerToastTimer = setTimeout(() => document.body.classList.remove('gallery-toast-open'), undo ? 15000 : 5000);
  return [];
}

if (!window.captionerModal) {
  const modal = () => document.getElementById('item-modal');
  const panel = () => document.getElementById('item-panel');
  const isOpen = () => document.body.classList.contains('item-modal-open');
  const focusables = () => Array.from((panel() || document.body).querySelectorAll(
      'button, [href], input, textarea, select, video[controls], [tabindex]:not([tabindex="-1"])'))
    .filter((el) => !el.disabled && el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden');
  const api = window.captionerModal = {
    opener: null,
    isOpen,
    open() {
      const m = modal(), p = panel();
      if (!m || !p) { return; }
      if (!isOpen()) { api.opener = document.activeElement; }
      document.body.classList.add('item-modal-open');
      m.setAttribute('role', 'dialog');
      m.setAttribute('aria-modal', 'true');
      m.setAttribute('aria-labelledby', 'item-modal-title');
      p.setAttribute('tabindex', '-1');
      p.scrollTop = 0;
      const close = document.querySelector('#item-close');
      (close || p).focus({preventScroll: true});
      m.dataset.opened = String((Number(m.dataset.opened) || 0) + 1);
    },
    close() {
      if (!isOpen()) { return; }
      document.body.classList.remove('item-modal-open');
      document.querySelectorAll('#item-modal video').forEach((v) => v.pause());
      const view = (window.captionerPlayers || {}).item;
      if (view && view.stop) { view.stop(); }
      const back = api.opener;
      api.opener = null;
      if (back && back.isConnected && back.focus) { back.focus({preventScroll: true}); }
    },
  };
  document.addEventListener('keydown', (e) => {
    if (!isOpen()) { return; }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); api.close(); return; }
    if (e.key !== 'Tab') { return; }
    const list = focusables();
    if (!list.length) { return; }
    const first = list[0], last = list[list.length - 1], now = document.activeElement;
    if (!panel().contains(now)) { (e.shiftKey ? last : first).focus(); e.preventDefault(); }
    else if (e.shiftKey && now === first) { last.focus(); e.preventDefault(); }
    else if (!e.shiftKey && now === last) { first.focus(); e.preventDefault(); }
  }, true);
  document.addEventListener('mousedown', (e) => { if (isOpen() && e.target === modal()) { api.close(); } });
}

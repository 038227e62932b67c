const go = (e) => {
  const row = e.target.closest ? e.target.closest('tr[data-start]') : null;
  if (!row || !element.contains(row)) { return; }
  if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') { return; }
  const v = document.querySelector('#item-player video'), t = Number(row.dataset.start);
  if (!v || !isFinite(t)) { return; }
  v.currentTime = t + 0.001;
  element.querySelectorAll('tr.playing').forEach((r) => r.classList.remove('playing'));
  row.classList.add('playing');
  const box = document.querySelector('#item-player');  // the player in view: what changed is seen
  const head = document.querySelector('#item-modal-head'), panel = document.querySelector('#item-panel');
  if (box && panel) {
    const top = box.getBoundingClientRect().top - (head ? head.getBoundingClientRect().bottom : 0);
    if (top < 0 || box.getBoundingClientRect().bottom > window.innerHeight) { panel.scrollTop += top - 4; }
  }
  const played = v.play(); if (played && played.catch) { played.catch(() => {}); }
  if (e.type === 'keydown') { e.preventDefault(); }
};
element.addEventListener('click', go);
element.addEventListener('keydown', go);

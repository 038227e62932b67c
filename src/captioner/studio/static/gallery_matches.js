const open = (e) => {
  const row = e.target.closest ? e.target.closest('li[data-index]') : null;
  if (!row || !element.contains(row)) { return; }
  if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') { return; }
  const thumbs = document.querySelectorAll('#gallery-grid .thumbnail-item');
  const thumb = thumbs[Number(row.dataset.index)];
  if (thumb) { thumb.click(); if (e.type === 'keydown') { e.preventDefault(); } }
};
element.addEventListener('click', open);
element.addEventListener('keydown', open);

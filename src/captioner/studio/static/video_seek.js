(t) => {
  const v = document.querySelector('#video-player video');
  if (v && t !== null && t !== undefined && isFinite(t)) { v.currentTime = Number(t) + 0.001; }
  return [];
}

() => { const s = window.captionerStage = window.captionerStage || {token: "", paths: [], waiting: 0, seq: 0};
    s.token = ""; s.paths = []; s.waiting += 1; s.seq = (s.seq || 0) + 1; return []; }

(answer) => { const s = window.captionerStage = window.captionerStage || {token: "", paths: [], waiting: 0, seq: 0};
    let v = {}; try { v = JSON.parse(answer || "{}") || {}; } catch (e) { v = {}; }
    s.token = typeof v.token === "string" ? v.token : ""; s.paths = Array.isArray(v.paths) ? v.paths : [];
    s.waiting = Math.max(0, s.waiting - 1); return []; }

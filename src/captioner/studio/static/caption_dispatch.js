async (files, beam, maxLen, add) => {
    const list = Array.isArray(files) ? files : (files ? [files] : []);
    if (list.length === 1 && window.captionerCaptionNow && await window.captionerCaptionNow(list[0], beam, maxLen, add)) { return []; }
    const b = document.querySelector(list.length > 1 ? '#caption-queued' : '#caption-now'); if (b) { b.click(); } return []; }

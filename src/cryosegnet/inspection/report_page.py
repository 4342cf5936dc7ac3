# ruff: noqa: E501  (HTML, CSS and JavaScript read better unwrapped)
"""The page template of ``cryosegnet report``: HTML, CSS and JavaScript, no external resources.

Placeholders ``@@NAME@@`` are filled by :func:`cryosegnet.inspection.report.render_page`; the
picks arrive as JSON in ``<script id="report-data">``. Hooks for tests and automation:
``#threshold=X`` in the URL sets the slider on load; ``<html data-ready="1">`` once the page
has drawn; ``<html data-errors="N">`` if a script error happened; the kept count is in
``#kept-count``. With a classification (``@@CLASSES@@`` filled): ``#classes=1,4`` (combined as
``#threshold=X&classes=1,4``) selects those classes on load (``&above-decoys=1``: only
their members above the noise decoys), the picks in selected classes are
counted in ``#class-kept`` and the ``cryosegnet select`` command is in ``#select-command``.
With bad-region tints (``@@BAD_REGIONS@@`` filled), ``#show-bad`` shows or hides them
(``#...&bad=0`` hides them on load); hidden, ``<main>`` has the class ``hide-bad``.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message));
  document.documentElement.setAttribute("data-errors", String(window.__errors.length));
});
</script>
<style>
:root { --bg:#15171a; --panel:#1f2227; --text:#e6e6e6; --dim:#9aa0a6; --keep:#ff4d3d;
        --drop:#4da3ff; --warn:#ffb020; --bad:#ff4d3d; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
header { position:sticky; top:0; z-index:2; background:var(--panel); padding:10px 16px;
         box-shadow:0 2px 6px #0008; display:flex; flex-wrap:wrap; gap:8px 24px; align-items:center; }
header h1 { font-size:16px; margin:0; width:100%; }
header .sub { color:var(--dim); font-size:12px; font-weight:normal; margin-left:8px; }
#histogram { background:#111; border-radius:4px; cursor:crosshair; }
.controls { display:flex; flex-direction:column; gap:6px; min-width:320px; flex:1; }
.controls label { display:flex; gap:8px; align-items:center; }
#threshold { flex:1; }
#threshold-value { width:6.5em; background:#111; color:var(--text); border:1px solid #444; padding:2px 4px; }
.cmd { display:flex; gap:6px; align-items:center; }
.cmd code { background:#000; padding:4px 8px; border-radius:4px; white-space:nowrap; overflow-x:auto;
            max-width:70vw; user-select:all; }
button, select { background:#333; color:var(--text); border:1px solid #555; border-radius:4px; padding:3px 10px; }
button:hover { background:#444; }
.stats b { color:#fff; }
.legend span { margin-right:12px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:50%; border:2px solid; margin-right:4px; vertical-align:-1px; }
main { padding:12px 16px; display:grid; gap:12px; grid-template-columns:repeat(auto-fill, minmax(220px, 1fr)); }
main.only-flagged .card:not(.flagged) { display:none; }
main.hide-bad .thumb img.bad { display:none; }
.card { background:var(--panel); border-radius:6px; overflow:hidden; border:2px solid transparent;
        content-visibility:auto; contain-intrinsic-size:auto 300px; }
.card.flag-bad { border-color:var(--bad); }
.card.flag-warn { border-color:var(--warn); }
.thumb { position:relative; width:100%; background:#000; }
.thumb img, .thumb canvas, .thumb .noimg { position:absolute; inset:0; width:100%; height:100%; }
.noimg { display:flex; align-items:center; justify-content:center; color:var(--dim); background:#2a2d33; font-size:12px; padding:8px; text-align:center; }
.meta { padding:6px 8px; font-size:12px; }
.name { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; color:var(--dim); }
.flags span { border-radius:3px; padding:0 4px; margin-left:2px; color:#000; font-weight:600; }
.flags .bad { background:var(--bad); }
.flags .warn { background:var(--warn); }
#class-panel { padding:10px 16px 0; }
.class-head { display:flex; flex-wrap:wrap; gap:6px 10px; align-items:center; }
#class-grid { display:flex; flex-wrap:wrap; gap:8px; padding:8px 0; }
.cls { display:flex; flex-direction:column; align-items:center; gap:2px; padding:3px; border:3px solid #333; background:var(--panel); cursor:pointer; }
.cls img { display:block; width:96px; height:96px; opacity:0.4; image-rendering:auto; }
.cls.selected { border-color:#3ddc84; }
.cls.selected img { opacity:1; }
.cls-label { font-size:12px; color:var(--dim); }
.class-head .sub { color:var(--dim); font-size:12px; }
.cls.selected .cls-label { color:var(--text); }
.cls .auto { color:var(--warn); margin-left:4px; }
</style>
</head>
<body>
<header>
  <h1>Picks in <code>@@PICKS_DIR@@</code><span class="sub">@@META@@</span></h1>
  <canvas id="histogram" width="420" height="110" title="figure of merit histogram: click to set the threshold"></canvas>
  <div class="controls">
    <label>min score <input id="threshold" type="range"> <input id="threshold-value" type="number"></label>
    <div class="stats"><b id="kept-count">0</b> of <b id="total-count">0</b> picks kept on
      <b id="mic-count">0</b> micrographs; <b id="flag-count">0</b> flagged</div>
    <div class="cmd"><code id="command"></code><button id="copy" type="button">copy</button><span id="copied"></span></div>
    <div>sort <select id="sort">
        <option value="flags">flagged first</option>
        <option value="count-asc">fewest picks first</option>
        <option value="count-desc">most picks first</option>
        <option value="mean-asc">lowest mean score first</option>
        <option value="name">name</option>
      </select>
      <label style="display:inline-flex"><input id="only-flagged" type="checkbox"> flagged only</label>
      <label style="display:inline-flex"><input id="show-dropped" type="checkbox" checked> show dropped</label>
@@BAD_REGIONS@@
      <span class="legend"><span><i style="border-color:var(--keep)"></i>kept</span><span><i style="border-color:var(--drop)"></i>dropped</span></span>
    </div>
  </div>
  <div class="sub" style="width:100%">made by <code>@@COMMAND@@</code></div>
</header>
@@CLASSES@@
<main id="cards">
@@CARDS@@
</main>
<script type="application/json" id="report-data">@@DATA@@</script>
<script>
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var mics = DATA.micrographs;
  var lo = DATA.score_min, hi = DATA.score_max;
  var slider = document.getElementById("threshold");
  var box = document.getElementById("threshold-value");
  var container = document.getElementById("cards");
  var cards = Array.prototype.slice.call(container.querySelectorAll(".card"));
  // A round step (0.001 for scores in 0..1) and slider ends on multiples of it, so the slider
  // lands on round thresholds like 0.5 exactly.
  var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 500)));
  lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
  slider.min = box.min = lo; slider.max = box.max = hi; slider.step = box.step = step;
  var allScores = [];
  mics.forEach(function (m) {
    m.sv = Float64Array.from(m.s, function (v) { return v === null ? NaN : v; });
    for (var k = 0; k < m.sv.length; k++) if (!isNaN(m.sv[k])) allScores.push(m.sv[k]);
    m.count = 0; m.mean = NaN; m.flags = []; m.drawnAt = null;
  });
  var threshold = roundDown(clamp(DATA.threshold));
  var visible = new Set();
  // Classes: the class of every pick (0: not in the classification) and which are selected.
  var CL = DATA.classes;
  var selected = new Set(CL ? CL.auto : []);
  var classTiles = Array.prototype.slice.call(document.querySelectorAll("#class-grid .cls"));
  var selectedFlag = new Uint8Array(1);
  var classVersion = 0;
  var aboveBox = document.getElementById("above-decoys");
  function inSelection(m, k) { return selectedFlag[m.c[k]] === 1 && (!aboveBox.checked || m.a[k] === 1); }
  var pending = false, resortPending = true;

  // The threshold is always a round decimal, the same number the command line shows, so the
  // page's count is exactly what `cryosegnet threshold --min-score` keeps (score >= X).
  var DECIMALS = Math.min(10, Math.max(0, Math.round(-Math.log10(step))));
  function clamp(t) { t = Number(t); if (!isFinite(t)) t = lo; return Math.min(hi, Math.max(lo, t)); }
  function fmt(t) { return String(Number(t.toFixed(DECIMALS))); }
  function roundDown(t) { var f = Math.pow(10, DECIMALS); return Number(fmt(Math.floor(t * f + 1e-6) / f)); }
  function median(a) {
    if (!a.length) return NaN;
    var b = a.slice().sort(function (p, q) { return p - q; });
    var h = b.length >> 1;
    return b.length % 2 ? b[h] : (b[h - 1] + b[h]) / 2;
  }

  function computeStats() {
    var t = threshold, kept = 0, means = [], counts = [];
    mics.forEach(function (m) {
      var n = 0, sum = 0, sv = m.sv;
      for (var k = 0; k < sv.length; k++) if (sv[k] >= t) { n++; sum += sv[k]; }
      m.count = n; m.mean = n ? sum / n : NaN; kept += n; counts.push(n);
      if (n) means.push(m.mean);
    });
    var medCount = median(counts), medMean = median(means);
    var mad = 1.4826 * median(means.map(function (v) { return Math.abs(v - medMean); }));
    var flagged = 0;
    mics.forEach(function (m) {
      var f = [];
      if (m.why) f.push(["bad", m.why]);
      else if (m.count === 0) f.push(["bad", "empty"]);
      else if (medCount > 0 && m.count < DATA.low_count_fraction * medCount) f.push(["warn", "few picks"]);
      if (medCount > 0 && m.count > DATA.high_count_factor * medCount) f.push(["warn", "many picks"]);
      if (m.count && m.mean < medMean - Math.max(DATA.low_score_mads * mad, 0.1 * (hi - lo))) f.push(["warn", "low score"]);
      m.flags = f; if (f.length) flagged++;
    });
    return {kept: kept, flagged: flagged};
  }

  function drawOverlay(i) {
    var m = mics[i];
    var stamp = threshold + "|" + classVersion;
    if (m.drawnAt === stamp) return;
    var canvas = cards[i].querySelector("canvas");
    var ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    var r = m.r, pass, showDropped = document.getElementById("show-dropped").checked;
    for (pass = showDropped ? 0 : 1; pass < 2; pass++) {
      ctx.lineWidth = pass === 1 ? Math.max(1.2, m.tw / 180) : 1;
      ctx.beginPath();
      for (var k = 0; k < m.x.length; k++) {
        var keep = m.sv[k] >= threshold && (!CL || inSelection(m, k));
        if (keep !== (pass === 1)) continue;
        ctx.moveTo(m.x[k] + r, m.y[k]);
        ctx.arc(m.x[k], m.y[k], r, 0, 2 * Math.PI);
      }
      ctx.strokeStyle = pass === 1 ? "rgba(255,77,61,0.95)" : "rgba(77,163,255,0.35)";
      ctx.stroke();
    }
    m.drawnAt = stamp;
  }

  function selectedList() {
    return Array.from(selected).sort(function (a, b) { return a - b; });
  }

  function setClasses(list, fromHash) {
    if (!CL) return;
    selected = new Set(list.filter(function (n) { return CL.numbers.indexOf(n) >= 0; }));
    selectedFlag = new Uint8Array(Math.max.apply(null, CL.numbers.concat([0])) + 1);
    selected.forEach(function (n) { selectedFlag[n] = 1; });
    classTiles.forEach(function (tile) {
      var on = selected.has(Number(tile.getAttribute("data-class")));
      tile.classList.toggle("selected", on);
      tile.setAttribute("aria-pressed", on ? "true" : "false");
    });
    classVersion++;
    if (!fromHash) writeHash();
    schedule();
  }

  function classStats() {
    var kept = 0, total = 0;
    mics.forEach(function (m) {
      var n = 0, c = m.c;
      for (var k = 0; k < c.length; k++) if (c[k] > 0) { total++; if (inSelection(m, k)) n++; }
      m.classCount = n; kept += n;
    });
    return {kept: kept, total: total};
  }

  function selectCommandText() {
    if (!selected.size) return "(select at least one class)";
    return "cryosegnet select " + CL.folder + " --classes " + selectedList().join(",") +
      (aboveBox.checked ? " --above-decoys" : "") + " -o " + CL.output;
  }

  function writeHash() {
    if (!(window.history && history.replaceState)) return;
    var hash = "#threshold=" + fmt(threshold);
    if (CL) hash += "&classes=" + selectedList().join(",") + (aboveBox.checked ? "&above-decoys=1" : "");
    history.replaceState(null, "", hash);
  }

  var hist = document.getElementById("histogram");
  var BINS = 50;
  var binCounts = new Array(BINS).fill(0);
  allScores.forEach(function (s) { binCounts[Math.min(BINS - 1, Math.floor((s - lo) / (hi - lo) * BINS))]++; });
  var maxBin = Math.max.apply(null, binCounts.concat([1]));
  var PAD = 18;
  function drawHistogram() {
    var ctx = hist.getContext("2d"), W = hist.width, H = hist.height - PAD;
    ctx.clearRect(0, 0, hist.width, hist.height);
    var bw = W / BINS;
    for (var b = 0; b < BINS; b++) {
      var h = Math.round((H - 4) * binCounts[b] / maxBin);
      var edge = lo + (b + 1) * (hi - lo) / BINS;
      ctx.fillStyle = edge > threshold ? "#ff4d3d" : "#555b63";
      ctx.fillRect(b * bw + 0.5, H - h, bw - 1, h);
    }
    var xT = (threshold - lo) / (hi - lo) * W;
    ctx.fillStyle = "#fff"; ctx.fillRect(Math.min(W - 2, Math.max(0, xT - 1)), 0, 2, H);
    ctx.fillStyle = "#9aa0a6"; ctx.font = "11px sans-serif";
    ctx.textAlign = "left"; ctx.fillText(fmt(lo), 2, H + 13);
    ctx.textAlign = "right"; ctx.fillText(fmt(hi), W - 2, H + 13);
    ctx.textAlign = "center"; ctx.fillText("figure of merit (" + allScores.length + " picks)", W / 2, H + 13);
  }
  hist.addEventListener("click", function (e) {
    var rect = hist.getBoundingClientRect();
    setThreshold(lo + (e.clientX - rect.left) / rect.width * (hi - lo), false, true);
  });

  function commandText() {
    return "cryosegnet threshold " + DATA.picks_dir + " --min-score " + fmt(threshold) + " -o " + DATA.output;
  }

  function update() {
    pending = false;
    var s = computeStats();
    document.getElementById("kept-count").textContent = String(s.kept);
    document.getElementById("total-count").textContent = String(allScores.length);
    document.getElementById("mic-count").textContent = String(mics.length);
    document.getElementById("flag-count").textContent = String(s.flagged);
    document.getElementById("command").textContent = commandText();
    if (CL) {
      var c = classStats();
      document.getElementById("class-kept").textContent = String(c.kept);
      document.getElementById("class-total").textContent = String(c.total);
      document.getElementById("class-selected").textContent = String(selected.size);
      document.getElementById("select-command").textContent = selectCommandText();
    }
    mics.forEach(function (m, i) {
      var card = cards[i];
      card.querySelector(".count").textContent = String(m.count);
      card.querySelector(".mean").textContent = m.count ? m.mean.toFixed(3) : "–";
      if (CL) card.querySelector(".cls-count").textContent = String(m.classCount);
      var html = m.flags.map(function (f) { return '<span class="' + f[0] + '">' + f[1] + "</span>"; }).join("");
      var flagsEl = card.querySelector(".flags");
      if (flagsEl.innerHTML !== html) flagsEl.innerHTML = html;
      card.classList.toggle("flagged", m.flags.length > 0);
      card.classList.toggle("flag-bad", m.flags.some(function (f) { return f[0] === "bad"; }));
      card.classList.toggle("flag-warn", m.flags.length > 0 && !card.classList.contains("flag-bad"));
    });
    visible.forEach(drawOverlay);
    drawHistogram();
    // Re-sort only when the slider is let go, so cards do not jump around while dragging.
    if (resortPending) { resortPending = false; sortCards(); }
  }

  function schedule() {
    if (!pending) { pending = true; window.requestAnimationFrame(update); }
  }

  function setThreshold(t, fromHash, resort) {
    if (resort) resortPending = true;
    threshold = roundDown(clamp(t));
    slider.value = threshold; box.value = fmt(threshold);
    if (!fromHash) writeHash();
    schedule();
  }

  function sortCards() {
    var key = document.getElementById("sort").value;
    var order = mics.map(function (m, i) { return i; });
    var byName = function (a, b) { return mics[a].name < mics[b].name ? -1 : mics[a].name > mics[b].name ? 1 : 0; };
    var num = function (v) { return isNaN(v) ? -Infinity : v; };
    var cmp = {
      "name": byName,
      "count-asc": function (a, b) { return mics[a].count - mics[b].count || byName(a, b); },
      "count-desc": function (a, b) { return mics[b].count - mics[a].count || byName(a, b); },
      "mean-asc": function (a, b) { return num(mics[a].mean) - num(mics[b].mean) || byName(a, b); },
      "flags": function (a, b) {
        var fa = mics[a].flags.length ? (mics[a].count === 0 ? 2 : 1) : 0;
        var fb = mics[b].flags.length ? (mics[b].count === 0 ? 2 : 1) : 0;
        return fb - fa || mics[a].count - mics[b].count || byName(a, b);
      }
    }[key];
    order.sort(cmp);
    var same = true;
    for (var k = 0; k < order.length; k++) if (container.children[k] !== cards[order[k]]) { same = false; break; }
    if (!same) {
      var frag = document.createDocumentFragment();
      order.forEach(function (i) { frag.appendChild(cards[i]); });
      container.appendChild(frag);
    }
  }

  function fromHash() {
    var match = /(?:^|[#&])threshold=([-+0-9.eE]+)/.exec(window.location.hash);
    return match ? Number(match[1]) : null;
  }

  function aboveFromHash() { return /(?:^|[#&])above-decoys=1/.test(window.location.hash); }

  function classesFromHash() {
    var match = /(?:^|[#&])classes=([0-9,]*)/.exec(window.location.hash);
    if (!match) return null;
    return match[1].split(",").filter(function (v) { return v !== ""; }).map(Number);
  }

  slider.addEventListener("input", function () { setThreshold(slider.value); });
  slider.addEventListener("change", function () { setThreshold(slider.value, false, true); });
  box.addEventListener("change", function () { setThreshold(box.value, false, true); });
  window.addEventListener("hashchange", function () {
    var t = fromHash(); if (t !== null) setThreshold(t, true, true);
    var c = classesFromHash(); if (c !== null) setClasses(c, true);
    if (CL) { aboveBox.checked = aboveFromHash(); setClasses(selectedList(), true); }
  });
  classTiles.forEach(function (tile) {
    tile.addEventListener("click", function () {
      var n = Number(tile.getAttribute("data-class")), list = selectedList();
      setClasses(selected.has(n) ? list.filter(function (v) { return v !== n; }) : list.concat([n]));
    });
  });
  if (CL) {
    document.getElementById("classes-auto").addEventListener("click", function () { setClasses(CL.auto); });
    document.getElementById("classes-all").addEventListener("click", function () { setClasses(CL.numbers); });
    document.getElementById("classes-none").addEventListener("click", function () { setClasses([]); });
    aboveBox.addEventListener("change", function () { setClasses(selectedList()); });
    document.getElementById("copy-select").addEventListener("click", function () {
      copyText(selectCommandText(), document.getElementById("copied-select"));
    });
  }
  document.getElementById("sort").addEventListener("change", sortCards);
  document.getElementById("show-dropped").addEventListener("change", function () {
    mics.forEach(function (m) { m.drawnAt = null; });
    visible.forEach(drawOverlay);
  });
  document.getElementById("only-flagged").addEventListener("change", function (e) {
    container.classList.toggle("only-flagged", e.target.checked);
  });
  var badBox = document.getElementById("show-bad");  // only with bad-region tints
  if (badBox) {
    if (/(?:^|[#&])bad=0/.test(window.location.hash)) badBox.checked = false;
    container.classList.toggle("hide-bad", !badBox.checked);
    badBox.addEventListener("change", function () {
      container.classList.toggle("hide-bad", !badBox.checked);
    });
  }
  document.getElementById("copy").addEventListener("click", function () {
    copyText(commandText(), document.getElementById("copied"));
  });
  function copyText(text, note) {
    function done(ok) { note.textContent = ok ? " copied" : " select and copy by hand"; }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
      document.body.removeChild(area); done(ok);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else { fallback(); }
  }

  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        var i = Number(entry.target.getAttribute("data-i"));
        if (entry.isIntersecting) { visible.add(i); drawOverlay(i); } else { visible.delete(i); }
      });
    }, {rootMargin: "300px"});
    cards.forEach(function (card) { observer.observe(card); });
  } else {
    cards.forEach(function (card, i) { visible.add(i); });
  }

  var initialClasses = classesFromHash();
  if (CL) aboveBox.checked = aboveFromHash();
  setClasses(initialClasses !== null ? initialClasses : selectedList(), true);
  var initial = fromHash();
  setThreshold(initial !== null ? initial : threshold, true, true);
  update();
  // The observer reports the cards in view only after a frame has been drawn; draw those
  // cards' overlays now, so the first picture of the page (or a screenshot) has them.
  var reach = window.innerHeight + 300;
  cards.forEach(function (card, i) {
    var rect = card.getBoundingClientRect();
    if (rect.bottom > -300 && rect.top < reach) { visible.add(i); drawOverlay(i); }
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
"""

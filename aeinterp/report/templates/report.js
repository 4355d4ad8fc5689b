(function () {
  "use strict";
  function cellValue(td) {
    var v = td.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(parseFloat(v))) return parseFloat(v);
    return td.textContent.trim().toLowerCase();
  }
  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
      if (typeof x === "number" && typeof y === "number") return asc ? x - y : y - x;
      x = String(x); y = String(y);
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function initSortable(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.sortable"), function (table) {
      if (!table.tHead || table.getAttribute("data-ready")) return;
      table.setAttribute("data-ready", "1");
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.addEventListener("click", function () { sortTable(table, i, th); });
      });
    });
  }
  function initFilters() {
    Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (inp) {
      inp.addEventListener("input", function () {
        var table = document.getElementById(inp.getAttribute("data-for"));
        if (!table) return;
        var q = inp.value.trim().toLowerCase();
        var shown = 0;
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          var hit = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
          r.style.display = hit ? "" : "none";
          if (hit) shown += 1;
        });
        table.setAttribute("data-shown", String(shown));
      });
    });
  }
  function initSelector() {
    var sel = document.getElementById("latent-select");
    if (!sel) return;
    function show(name) {
      Array.prototype.forEach.call(document.querySelectorAll("section.latent-view"), function (s) {
        s.hidden = s.getAttribute("data-latent") !== name;
      });
      Array.prototype.forEach.call(document.querySelectorAll("button[data-latent-tab]"), function (b) {
        var on = b.getAttribute("data-latent-tab") === name;
        b.setAttribute("aria-selected", on ? "true" : "false");
        b.classList.toggle("on", on);
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll("button[data-latent-tab]"), function (b) {
      b.addEventListener("click", function () { sel.value = b.getAttribute("data-latent-tab"); show(sel.value); });
    });
    sel.addEventListener("change", function () { show(sel.value); });
    Array.prototype.forEach.call(document.querySelectorAll("a[data-latent-link]"), function (a) {
      a.addEventListener("click", function () { sel.value = a.getAttribute("data-latent-link"); show(sel.value); });
    });
    show(sel.value);
  }
  function initTooltips() {
    var tip = document.getElementById("tip");
    if (!tip) return;
    document.addEventListener("mouseover", function (ev) {
      var t = ev.target;
      if (t && t.getAttribute && t.getAttribute("data-tip")) {
        tip.textContent = t.getAttribute("data-tip");
        tip.style.display = "block";
      }
    });
    document.addEventListener("mousemove", function (ev) {
      if (tip.style.display === "block") { tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px"; }
    });
    document.addEventListener("mouseout", function (ev) {
      if (ev.target && ev.target.getAttribute && ev.target.getAttribute("data-tip")) tip.style.display = "none";
    });
  }
  function colour(v, peak) {
    var l = peak > 0 ? Math.max(0, Math.min(1, v / peak)) : 0;
    var r = Math.round(255 - 90 * l), g = Math.round(255 - 215 * l), b = Math.round(255 - 175 * l);
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function initFullMatrices() {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-matrix]"), function (btn) {
      btn.addEventListener("click", function () {
        var id = btn.getAttribute("data-matrix");
        var holder = document.getElementById(id + "-table");
        if (holder.firstChild) { holder.innerHTML = ""; btn.textContent = btn.getAttribute("data-label"); return; }
        var m = JSON.parse(document.getElementById(id).textContent);
        var peak = 0;
        m.v.forEach(function (row) { row.forEach(function (x) { if (x !== null && x > peak) peak = x; }); });
        var t = document.createElement("table");
        t.className = "sortable full";
        var head = t.createTHead().insertRow();
        var th0 = document.createElement("th"); th0.textContent = "feature"; head.appendChild(th0);
        m.rows.forEach(function (r) { var th = document.createElement("th"); th.textContent = r; head.appendChild(th); });
        var body = t.createTBody();
        m.cols.forEach(function (c, j) {
          var tr = body.insertRow();
          var td0 = tr.insertCell(); td0.textContent = c;
          m.rows.forEach(function (r, i) {
            var x = m.v[i][j];
            var td = tr.insertCell();
            td.className = "num";
            td.setAttribute("data-v", x === null ? "" : String(x));
            td.textContent = x === null ? "" : Number(x).toPrecision(3);
            td.style.background = colour(x || 0, peak);
          });
        });
        holder.appendChild(t);
        initSortable(holder);
        btn.textContent = "hide the full table";
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    initSortable(document);
    initFilters();
    initSelector();
    initTooltips();
    initFullMatrices();
  });
})();

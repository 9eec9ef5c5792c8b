// trainfaas web UI: live regions, confirmations, copy buttons, sortable tables, metric charts.
// No inline scripts (the pages' Content-Security-Policy forbids them); data comes in
// <script type="application/json"> islands and data-* attributes.
(function () {
  "use strict";

  // ---- live regions: poll the page itself and swap every [data-live] element by id ----------------
  function keepChecked(region) {
    var checked = {};
    region.querySelectorAll("input[type=checkbox]").forEach(function (box) { if (box.checked) checked[box.value] = true; });
    return checked;
  }

  function swap(fresh) {
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var next = fresh.getElementById(region.id);
      if (!next) return;
      var checked = keepChecked(region);
      var follow = region.dataset.follow && document.getElementById(region.dataset.follow);
      var atBottom = region.scrollTop + region.clientHeight >= region.scrollHeight - 8;
      region.innerHTML = next.innerHTML;
      region.querySelectorAll("input[type=checkbox]").forEach(function (box) { if (checked[box.value]) box.checked = true; });
      if (follow && (follow.checked || atBottom)) region.scrollTop = region.scrollHeight;
    });
    bindForms(document);
    updateCompare();
    drawCharts();
    if (!fresh.body.hasAttribute("data-poll")) document.body.removeAttribute("data-poll");
  }

  function poll() {
    var every = parseInt(document.body.dataset.poll || "0", 10);
    if (!every) return;
    setTimeout(function () {
      if (document.hidden) return poll();
      fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "poll" } })
        .then(function (response) {
          if (response.redirected || !response.ok) throw new Error("page answered " + response.status);
          return response.text();
        })
        .then(function (text) { swap(new DOMParser().parseFromString(text, "text/html")); })
        .catch(function () { /* try again at the next tick */ })
        .then(poll);
    }, every);
  }

  // ---- forms that ask before acting ------------------------------------------------------------------
  function bindForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  // ---- compare checkboxes ----------------------------------------------------------------------------
  function updateCompare() {
    var form = document.querySelector("form[data-compare]");
    if (!form) return;
    var picked = form.querySelectorAll("input[name=execution]:checked").length;
    var button = form.querySelector("[data-compare-button]");
    button.disabled = picked < 2 || picked > 10;
    button.textContent = picked ? "Compare selected (" + picked + ")" : "Compare selected";
  }

  // ---- copy buttons and toggles ----------------------------------------------------------------------
  function bindButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = document.getElementById(button.dataset.copy).textContent;
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done);
        else {
          var area = document.createElement("textarea");
          area.value = text; document.body.appendChild(area); area.select();
          document.execCommand("copy"); area.remove(); done();
        }
      });
    });
    document.querySelectorAll("[data-toggle-class]").forEach(function (box) {
      box.addEventListener("change", function () {
        document.getElementById(box.dataset.target).classList.toggle(box.dataset.toggleClass, box.checked);
      });
    });
    document.addEventListener("change", function (event) {
      if (event.target.name === "execution") updateCompare();
    });
  }

  // ---- sortable tables: click a header of table[data-sortable] ----------------------------------------
  function bindSorting() {
    document.querySelectorAll("table[data-sortable] th[data-sort]").forEach(function (th, index) {
      th.tabIndex = 0;
      var sort = function () {
        var table = th.closest("table"), body = table.tBodies[0];
        var column = Array.prototype.indexOf.call(th.parentNode.children, th);
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].dataset.value || a.cells[column].textContent.trim();
          var y = b.cells[column].dataset.value || b.cells[column].textContent.trim();
          var nx = parseFloat(x), ny = parseFloat(y);
          var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) { if (event.key === "Enter") sort(); });
    });
  }


  // ---- the training wizard -----------------------------------------------------------------------------
  function bindWizard() {
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.addEventListener("change", function () { form.submit(); });
    });
    var form = document.getElementById("train-form");
    if (!form) return;
    var showMode = function () {
      var picked = form.querySelector("input[data-mode]:checked");
      form.querySelectorAll(".mode-pane").forEach(function (pane) { pane.hidden = !picked || pane.dataset.pane !== picked.value; });
    };
    form.querySelectorAll("input[data-mode]").forEach(function (radio) { radio.addEventListener("change", function () { showMode(); check(); }); });
    showMode();
    var timer = null, status = document.getElementById("check-status");
    var check = function () {
      var body = new FormData(form);
      fetch(form.getAttribute("data-check"), { method: "POST", body: body, credentials: "same-origin",
                                  headers: { "X-CSRF-Token": body.get("csrf") } })
        .then(function (response) { return response.json(); })
        .then(function (verdict) {
          form.querySelectorAll("[data-error-for]").forEach(function (slot) { slot.textContent = ""; });
          form.querySelectorAll("[data-field]").forEach(function (field) { field.classList.remove("invalid"); });
          Object.keys(verdict.fields || {}).forEach(function (key) {
            var slot = form.querySelector('[data-error-for="' + CSS.escape(key) + '"]') || form.querySelector('[data-error-for="configuration"]');
            if (slot) slot.textContent = (slot.dataset.errorFor === key ? "" : key + ": ") + verdict.fields[key];
            var field = form.querySelector('[data-field="' + CSS.escape(key) + '"]');
            if (field) field.classList.add("invalid");
          });
          status.textContent = verdict.ok ? "✓ The options are valid." : "✕ " + verdict.message;
          status.dataset.ok = verdict.ok ? "1" : "0";
        })
        .catch(function () { status.textContent = ""; });
    };
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(check, 350); });
    form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(check, 100); });
  }

  // ---- metric charts (uPlot) -------------------------------------------------------------------------
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  var charts = {};

  function chartWidth(holder) { return Math.max(220, holder.clientWidth - 14); }

  function drawCharts() {
    document.querySelectorAll("[data-charts]").forEach(function (box) {
      var island = document.getElementById(box.dataset.charts);
      if (!island || !window.uPlot) return;
      var figures = JSON.parse(island.textContent);
      box.dataset.count = String(figures.length);
      figures.forEach(function (figure) {
        var data = [figure.x].concat(figure.lines.map(function (line) { return line.values; }));
        var key = figure.figure + "|" + figure.lines.map(function (l) { return l.label; }).join(",");
        var existing = charts[key];
        if (existing) { existing.setData(data, false); existing.redraw(); return; }
        var holder = document.createElement("figure");
        holder.className = "chart";
        holder.dataset.figure = figure.figure;
        var caption = document.createElement("figcaption");
        caption.textContent = figure.figure;
        holder.appendChild(caption);
        box.appendChild(holder);
        var series = [{ label: figure.xlabel || "step" }].concat(figure.lines.map(function (line, i) {
          return { label: line.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
                   points: { show: figure.x.length < 60 } };
        }));
        charts[key] = new window.uPlot({
          width: chartWidth(holder), height: 220, series: series,
          scales: { x: { time: false } }, cursor: { drag: { x: true, y: false } },
          axes: [{ label: figure.xlabel || "step" }, {}], legend: { live: true }
        }, data, holder);
      });
    });
  }

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (key) {
      var chart = charts[key];
      chart.setSize({ width: chartWidth(chart.root.parentNode), height: 220 });
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    bindForms(document);
    bindButtons();
    bindSorting();
    bindWizard();
    updateCompare();
    drawCharts();
    document.querySelectorAll("[data-follow]").forEach(function (region) { region.scrollTop = region.scrollHeight; });
    poll();
  });
})();

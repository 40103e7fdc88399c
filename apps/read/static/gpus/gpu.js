/* GPU page: one uPlot chart per chosen metric over a window ending at the newest sample,
 * loaded from the REST telemetry endpoint and extended by the live feed. */
(function () {
  "use strict";
  var configEl = document.getElementById("gpu-config");
  if (!configEl || !window.uPlot) return;
  var config = JSON.parse(configEl.textContent);
  var chartsEl = document.getElementById("charts");
  var statusEl = document.getElementById("chart-status");
  var windowEl = document.getElementById("window");
  if (!chartsEl) return;

  var MAX_SAMPLES = 200000;  // stop paging past this; the status line says so
  var WINDOWS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, all: null };
  var COLOURS = ["#1f5fbf", "#d1495b", "#2a9d62", "#8e5ad6", "#e08a00", "#00838f", "#6d4c41", "#c2185b", "#546e7a", "#7cb342"];

  var newest = config.last_seen ? Date.parse(config.last_seen) / 1000 : Date.now() / 1000;
  var series = {};   // metric -> {xs: [], ys: []}
  var charts = {};   // metric -> {plot, el, now}
  var generation = 0;

  function chosen() {
    return Array.from(document.querySelectorAll("input[name=metric]:checked")).map(function (i) { return i.value; });
  }
  function windowSeconds() { return WINDOWS[windowEl.value]; }
  function info(metric) { return config.metrics[metric] || { label: metric, unit: "" }; }
  function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : String(Math.round(v * 100) / 100); }
  function axisLabel(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
    return String(+v.toFixed(2));
  }
  function iso(sec) { return new Date(sec * 1000).toISOString().replace(".000Z", "Z"); }

  function insert(s, x, y) {
    var i = s.xs.length;
    while (i > 0 && s.xs[i - 1] > x) i--;
    if (i > 0 && s.xs[i - 1] === x) { s.ys[i - 1] = y; return; }
    s.xs.splice(i, 0, x);
    s.ys.splice(i, 0, y);
  }

  function trim(s) {
    var w = windowSeconds();
    if (w === null) return;
    var start = newest - w, n = 0;
    while (n < s.xs.length && s.xs[n] < start) n++;
    if (n) { s.xs.splice(0, n); s.ys.splice(0, n); }
  }

  // The x axis spans the chosen window, ending at the newest sample (live data moves it).
  function xRange(u, min, max) {
    var w = windowSeconds();
    if (w !== null) return [newest - w, newest];
    return min === max || min === null ? [newest - 60, newest + 1] : [min, max];
  }

  function plotWidth(el) { return Math.max(240, el.clientWidth); }

  function makeChart(metric, index) {
    var meta = info(metric);
    var box = document.createElement("div");
    box.className = "chart";
    box.dataset.metric = metric;
    var title = document.createElement("h3");
    var name = document.createElement("span");
    name.textContent = meta.label + (meta.unit ? " (" + meta.unit + ")" : "");
    name.title = metric;
    var now = document.createElement("span");
    now.className = "now";
    title.append(name, now);
    var plotEl = document.createElement("div");
    plotEl.className = "plot";
    box.append(title, plotEl);
    chartsEl.appendChild(box);
    var s = series[metric];
    var plot = new uPlot({
      width: plotWidth(plotEl),
      height: 200,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true, range: xRange } },
      series: [
        {},
        { label: meta.label, stroke: COLOURS[index % COLOURS.length], width: 1.5,
          fill: COLOURS[index % COLOURS.length] + "18", points: { show: s.xs.length < 120, size: 6 } },
      ],
      // space: the least room per time label, so labels never overlap on a narrow window
      axes: [{ stroke: "#5d6878", grid: { stroke: "#eef1f5" }, space: 90 },
             { stroke: "#5d6878", grid: { stroke: "#eef1f5" }, size: 52,
               values: function (u, splits) { return splits.map(axisLabel); } }],
    }, [s.xs, s.ys], plotEl);
    charts[metric] = { plot: plot, el: box, plotEl: plotEl, now: now };
    box.uplot = plot;  // the browser tests measure the axis labels through it
    refresh(metric);
  }

  function refresh(metric) {
    var c = charts[metric], s = series[metric];
    if (!c) return;
    c.plot.setData([s.xs, s.ys]);
    c.el.dataset.samples = String(s.xs.length);
    var meta = info(metric);
    c.now.textContent = s.ys.length ? fmt(s.ys[s.ys.length - 1]) + (meta.unit ? " " + meta.unit : "") : "no data";
  }

  function summary(total, capped) {
    if (!total) {
      statusEl.textContent = "No samples in this window: choose a longer window or more metrics.";
      return;
    }
    var first = Infinity, last = -Infinity;
    Object.keys(series).forEach(function (m) {
      var xs = series[m].xs;
      if (xs.length) { first = Math.min(first, xs[0]); last = Math.max(last, xs[xs.length - 1]); }
    });
    statusEl.textContent = total + " samples from " + iso(first) + " to " + iso(last) + " (UTC)" +
      (capped ? "; stopped at " + MAX_SAMPLES + " samples: choose a shorter window for all of them" : "");
  }

  // format=columns: {timestamps: [ms...], series: {metric: [value|null...]}}; one response
  // holds the whole window unless it passes the server's byte limit (then `next`).
  function fetchAll(url, gen, total) {
    return fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (b) {
          if (!r.ok) throw new Error(b.detail || "HTTP " + r.status);
          return b;
        });
      })
      .then(function (body) {
        if (gen !== generation) return null;
        Object.keys(body.series).forEach(function (metric) {
          var s = series[metric], values = body.series[metric];
          if (!s) return;
          for (var i = 0; i < values.length; i++) {
            if (values[i] === null) continue;
            insert(s, body.timestamps[i] / 1000, values[i]);
            total++;
          }
        });
        if (body.next && total < MAX_SAMPLES) return fetchAll(body.next, gen, total);
        return { total: total, capped: Boolean(body.next) };
      });
  }

  function load() {
    var gen = ++generation;
    var metrics = chosen();
    Object.keys(charts).forEach(function (m) { charts[m].plot.destroy(); });
    charts = {};
    series = {};
    chartsEl.replaceChildren();
    if (!metrics.length) {
      statusEl.textContent = "Choose at least one metric.";
      return;
    }
    metrics.forEach(function (m) { series[m] = { xs: [], ys: [] }; });
    var params = new URLSearchParams({ metric: metrics.join(","), format: "columns" });
    var w = windowSeconds();
    if (w !== null) params.set("start_time", iso(newest - w));
    statusEl.textContent = "Loading…";
    fetchAll(config.telemetry_url + "?" + params.toString(), gen, 0)
      .then(function (res) {
        if (!res) return;
        metrics.forEach(function (m, i) { makeChart(m, i); });
        summary(res.total, res.capped);
      })
      .catch(function (err) {
        if (gen === generation) statusEl.textContent = "Could not load telemetry: " + err.message;
      });
  }

  // Live ---------------------------------------------------------------------------
  var dirty = new Set();
  var frame = 0;
  function redraw() {
    frame = 0;
    // Every chart, not only those with new samples: the window's end moved for all.
    Object.keys(series).forEach(function (m) { trim(series[m]); refresh(m); });
    dirty.clear();
    var total = Object.keys(series).reduce(function (n, m) { return n + series[m].xs.length; }, 0);
    summary(total, false);
  }

  function updateLatest(metric, sample) {
    var body = document.querySelector("#latest tbody");
    var row = body && body.querySelector('tr[data-metric="' + CSS.escape(metric) + '"]');
    if (!body) return;
    if (!row) {
      row = document.createElement("tr");
      row.dataset.metric = metric;
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = info(metric).label;
      var v = document.createElement("td");
      v.className = "value";
      var at = document.createElement("td");
      at.className = "at";
      row.append(th, v, at);
      body.appendChild(row);
    }
    var unit = info(metric).unit;
    row.querySelector(".value").textContent = fmt(sample.value) + (unit ? " " + unit : "");
    row.querySelector(".at").textContent = sample.timestamp;
    row.classList.add("updated");
  }

  function onSamples(message) {
    message.gpus.forEach(function (gpu) {
      if (gpu.uuid !== config.uuid) return;
      var latest = {};
      gpu.samples.forEach(function (sample) {
        var x = Date.parse(sample.timestamp) / 1000;
        if (x > newest) newest = x;
        var s = series[sample.metric_name];
        if (s) { insert(s, x, sample.value); dirty.add(sample.metric_name); }
        var seen = latest[sample.metric_name];
        if (!seen || sample.timestamp >= seen.timestamp) latest[sample.metric_name] = sample;
      });
      Object.keys(latest).forEach(function (m) { updateLatest(m, latest[m]); });
      var lastSeen = document.getElementById("last-seen");
      if (lastSeen) lastSeen.textContent = iso(newest);
    });
    // setTimeout, not requestAnimationFrame: a background tab must still catch up.
    if (dirty.size && !frame) frame = setTimeout(redraw, 100);
  }

  windowEl.addEventListener("change", load);
  document.querySelectorAll("input[name=metric]").forEach(function (i) { i.addEventListener("change", load); });
  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      Object.keys(charts).forEach(function (m) {
        var c = charts[m];
        c.plot.setSize({ width: plotWidth(c.plotEl), height: 200 });
      });
    }).observe(chartsEl);
  }
  load();
  window.liveFeed(config.ws_path, null, onSamples, document.getElementById("live-state"), load);
})();

/* Fleet page: colour mode switch, cluster filter, live tile updates, reload after uploads. */
(function () {
  "use strict";
  var UTIL = "DCGM_FI_DEV_GPU_UTIL";
  var TEMP = "DCGM_FI_DEV_GPU_TEMP";
  var MODE_KEY = "telemetry.fleet.mode";
  var fleet = document.getElementById("fleet");
  var configEl = document.getElementById("live-config");
  var config = configEl ? JSON.parse(configEl.textContent) : { clusters: [], metrics: [] };

  // Same buckets as apps.read.dashboard.bucket.
  function bucket(metric, value) {
    var prefix = metric === UTIL ? "u" : "t";
    var step = metric === UTIL ? value / 10 : (value - 20) / 8;
    return prefix + Math.min(9, Math.max(0, Math.floor(step)));
  }

  function setMode(mode) {
    if (!fleet) return;
    fleet.dataset.mode = mode;
    try { localStorage.setItem(MODE_KEY, mode); } catch (err) { /* private mode */ }
  }

  document.querySelectorAll("input[name=mode]").forEach(function (radio) {
    radio.addEventListener("change", function () { if (radio.checked) setMode(radio.value); });
  });
  var saved = null;
  try { saved = localStorage.getItem(MODE_KEY); } catch (err) { /* private mode */ }
  if (saved === "util" || saved === "temp") {
    var radio = document.querySelector("input[name=mode][value=" + saved + "]");
    if (radio) radio.checked = true;
    setMode(saved);
  }

  var select = document.getElementById("cluster-select");
  if (select) select.addEventListener("change", function () { select.form.submit(); });

  var tiles = new Map();
  document.querySelectorAll(".tile[data-uuid]").forEach(function (t) { tiles.set(t.dataset.uuid, t); });
  var unknown = new Set();
  var newBox = document.getElementById("new-gpus");

  function update(tile, metric, value) {
    var cls = metric === UTIL ? "util" : "temp";
    var prefix = metric === UTIL ? "u" : "t";
    Array.from(tile.classList).forEach(function (c) {
      if (c.length <= 6 && c.charAt(0) === prefix && /^[ut](\d|-none)$/.test(c)) tile.classList.remove(c);
    });
    tile.classList.add(bucket(metric, value));
    tile.querySelector(".val." + cls).textContent = Math.round(value) + (metric === UTIL ? "%" : "°");
    tile.classList.remove("flash");
    void tile.offsetWidth; // restart the animation
    tile.classList.add("flash");
  }

  function onSamples(message) {
    message.gpus.forEach(function (gpu) {
      var tile = tiles.get(gpu.uuid);
      if (!tile) {
        unknown.add(gpu.uuid);
        if (newBox) {
          document.getElementById("new-gpus-text").textContent =
            unknown.size + " GPU" + (unknown.size > 1 ? "s" : "") + " not shown yet sent telemetry.";
          newBox.hidden = false;
        }
        return;
      }
      var newest = {};
      gpu.samples.forEach(function (s) {
        var seen = newest[s.metric_name];
        if (!seen || s.timestamp >= seen.timestamp) newest[s.metric_name] = s;
      });
      [UTIL, TEMP].forEach(function (m) { if (newest[m]) update(tile, m, newest[m].value); });
    });
  }

  if (config.clusters.length) {
    window.liveFeed(
      "/ws/telemetry/",
      { action: "subscribe", clusters: config.clusters, metrics: config.metrics, id: 1 },
      onSamples,
      document.getElementById("live-state")
    );
  }

  // After an upload: GPUs the grid does not show yet (a new cluster sends nothing to this
  // page's subscription) need the server-rendered grid again. An empty page reloads at once.
  document.addEventListener("telemetry:uploaded", function () {
    if (!fleet) {
      location.reload();
      return;
    }
    var url = "/api/v1/gpus?limit=1" + (config.cluster ? "&cluster=" + encodeURIComponent(config.cluster) : "");
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var missing = body.count - tiles.size;
        if (missing > 0 && newBox) {
          document.getElementById("new-gpus-text").textContent =
            missing + " GPU" + (missing > 1 ? "s" : "") + " not shown yet.";
          newBox.hidden = false;
        }
      })
      .catch(function () { /* the notice is a convenience */ });
  });
})();

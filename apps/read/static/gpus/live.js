/* The live feed client (protocol: docs/LIVE.md), shared by the fleet and GPU pages.
 *
 * liveFeed(path, subscription, onSamples, stateEl) opens ws(s)://<this host><path>, sends
 * `subscription` (a subscribe command, or null when the path subscribes by itself),
 * calls onSamples(message) for each "samples" message, and reconnects with a growing
 * delay (1 s .. 30 s) when the connection drops. Samples stored while disconnected are
 * not replayed: pages reload data from the REST API after a reconnect if they need it.
 */
(function () {
  "use strict";

  function setState(el, state, text) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  window.liveFeed = function (path, subscription, onSamples, stateEl, onReconnect) {
    var delay = 1000;
    var opened = 0;
    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var ws;
      try {
        ws = new WebSocket(scheme + location.host + path);
      } catch (err) {
        setState(stateEl, "off", "live: unavailable");
        return;
      }
      ws.onopen = function () {
        delay = 1000;
        opened += 1;
        if (subscription) ws.send(JSON.stringify(subscription));
        setState(stateEl, "on", "live");
        if (opened > 1 && onReconnect) onReconnect();
      };
      ws.onmessage = function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (message.type === "samples") onSamples(message);
        else if (message.type === "error") setState(stateEl, "retrying", "live: " + message.error);
      };
      ws.onclose = function () {
        setState(stateEl, "retrying", "live: reconnecting…");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    if (!("WebSocket" in window)) {
      setState(stateEl, "off", "live: not supported by this browser");
      return;
    }
    connect();
  };
})();

// peergate's own script: small on purpose. htmx and its ws extension carry the
// live parts; this file only ticks clocks between server updates.
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function formatSeconds(total) {
    total = Math.max(0, Math.floor(total));
    var m = Math.floor(total / 60), s = total % 60;
    return m + ":" + pad(s);
  }

  // Every element with data-countdown="<RFC 3339>" shows the time left.
  // Every element with data-age-since="<RFC 3339>" shows the time elapsed.
  // The server's copies replace these elements whenever anything changes, so
  // the client's clock only fills the seconds in between.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var end = Date.parse(el.getAttribute("data-countdown"));
      if (!isNaN(end)) {
        var left = (end - now) / 1000;
        el.textContent = left > 0 ? formatSeconds(left) + " left" : "expired";
      }
    });
    document.querySelectorAll("[data-age-since]").forEach(function (el) {
      var start = Date.parse(el.getAttribute("data-age-since"));
      if (!isNaN(start)) { el.textContent = formatSeconds((now - start) / 1000); }
    });
  }

  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
  window.peergate = { tick: tick };
})();

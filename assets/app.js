// peergate's own script, small on purpose. htmx and its ws extension carry the
// live parts; this file ticks clocks between server updates, runs the review
// drawer, keeps the inbox count in the tab title, and continues an approved
// sign-in by itself.
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function formatSeconds(total) {
    total = Math.max(0, Math.floor(total));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    return h > 0 ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  // data-countdown="<RFC 3339>" shows the time left; data-age-since the time
  // elapsed. The server replaces these elements whenever anything changes, so
  // the client's clock only fills in the seconds between.
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

  // The inbox: count in the tab title, empty-state line, notifications, and
  // an announcement of each new request for screen readers.
  var knownRows = null;
  function refreshInbox() {
    var list = document.getElementById("inbox-rows");
    if (!list) { return; }
    var rows = list.querySelectorAll("li[data-session]");
    var n = rows.length;
    document.title = (n > 0 ? "(" + n + ") " : "") + "Inbox · peergate";
    var empty = document.getElementById("inbox-empty");
    if (empty) { empty.hidden = n > 0; }
    var ids = {};
    rows.forEach(function (r) { ids[r.getAttribute("data-session")] = true; });
    if (knownRows !== null) {
      Object.keys(ids).forEach(function (id) {
        if (!knownRows[id]) {
          var row = document.getElementById("row-" + id);
          notifyNew(row);
          announceNew(row);
        }
      });
    }
    knownRows = ids;
  }

  // A polite live region that stays in the page: each new request adds a
  // line (lines are added, not replaced, so two arrivals in quick succession
  // are both read); only the last few are kept.
  function announceNew(row) {
    var region = document.getElementById("inbox-announce");
    if (!row || !region) { return; }
    var name = row.querySelector(".name");
    var line = document.createElement("p");
    line.textContent = "New sign-in request from " + (name ? name.textContent : "someone") + ".";
    region.appendChild(line);
    while (region.children.length > 3) { region.removeChild(region.firstElementChild); }
  }

  function notifyNew(row) {
    var toggle = document.getElementById("notify-toggle");
    if (!row || !toggle || !toggle.checked || !("Notification" in window)) { return; }
    if (Notification.permission === "granted") {
      var name = row.querySelector(".name");
      new Notification("peergate: sign-in request", {
        body: (name ? name.textContent : "Someone") + " is waiting for review."
      });
    }
  }

  // The drawer: opened when a detail arrives, closed by its buttons or Escape;
  // focus goes back to the row that opened it (found again by session id,
  // since live updates may have replaced the row element). When that request
  // has left the inbox (decided, expired), focus goes to the request now in
  // its place, or the last one, or the inbox heading when none is left.
  var openedFor = null;
  var openedAt = 0;
  function drawer() { return document.getElementById("drawer"); }

  function closeDrawer() {
    var d = drawer();
    if (d && d.open) { d.close(); }
  }

  function rowOpened(button) {
    var li = button.closest("li");
    openedFor = li.getAttribute("data-session");
    openedAt = Array.prototype.indexOf.call(li.parentNode.children, li);
  }

  function restoreFocus() {
    if (!openedFor) { return; }
    var button = document.querySelector("#row-" + CSS.escape(openedFor) + " .row-open");
    openedFor = null;
    if (!button) {
      var buttons = document.querySelectorAll("#inbox-rows .row-open");
      button = buttons[Math.min(openedAt, buttons.length - 1)] || document.getElementById("inbox-title");
    }
    if (button) { button.focus(); }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var copy = target.closest("[data-copy-from]");
    if (copy) {
      var source = document.getElementById(copy.getAttribute("data-copy-from"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1500);
        });
      }
    }
    var row = target.closest("li[data-session] .row-open");
    if (row) { rowOpened(row); }
    if (target.closest("[data-close-dialog]")) { closeDrawer(); }
  });

  document.addEventListener("keydown", function (event) {
    if ((event.key === "Enter" || event.key === " ") && event.target instanceof Element) {
      var row = event.target.closest("li[data-session] .row-open");
      if (row) { rowOpened(row); }
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var d = drawer();
    if (d && event.detail && event.detail.target && event.detail.target.id === "drawer-body") {
      if (!d.open) { d.showModal(); }
      var first = d.querySelector("input, select, textarea, button:not(.close)");
      if (first) { first.focus(); }
    }
  });

  function afterLiveUpdate() {
    tick();
    refreshInbox();
    var form = document.querySelector("form[data-autosubmit]");
    if (form && !form.dataset.submitted) {
      form.dataset.submitted = "1";
      form.submit();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      // Show the server's explanation for refused decisions in the drawer.
      window.htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "(403|404|409|422|429|503)", swap: true, error: false },
        { code: "[45]..", swap: false, error: true }
      ];
    }
    var d = drawer();
    if (d) { d.addEventListener("close", restoreFocus); }
    var toggle = document.getElementById("notify-toggle");
    if (toggle && "Notification" in window) {
      toggle.checked = localStorage.getItem("peergate.notify") === "1" && Notification.permission === "granted";
      toggle.addEventListener("change", function () {
        if (toggle.checked && Notification.permission !== "granted") {
          Notification.requestPermission().then(function (p) { toggle.checked = p === "granted"; localStorage.setItem("peergate.notify", toggle.checked ? "1" : "0"); });
        } else {
          localStorage.setItem("peergate.notify", toggle.checked ? "1" : "0");
        }
      });
    } else if (toggle) {
      toggle.closest("label").hidden = true;
    }
    afterLiveUpdate();
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    // Marks the page as live once the first server message has been applied.
    document.body.setAttribute("data-live", "1");
    afterLiveUpdate();
  });
  document.addEventListener("htmx:oobAfterSwap", afterLiveUpdate);
  // The server is restarting (it closes sockets with 1001 "going away"): wait
  // until the next process answers, then reload, so the page is live again.
  function comeBack() {
    fetch("/healthz", { cache: "no-store" })
      .then(function (r) { if (r.ok) { location.reload(); } else { setTimeout(comeBack, 1000); } })
      .catch(function () { setTimeout(comeBack, 1000); });
  }
  document.addEventListener("htmx:wsClose", function (event) {
    var closed = event.detail && event.detail.event;
    if (closed && closed.code === 1001) {
      document.body.removeAttribute("data-live");
      setTimeout(comeBack, 500 + Math.random() * 1500);
    }
  });
  // The page's sockets are closed when it is hidden for good or put in the
  // back/forward cache: a cached inbox would otherwise keep its socket open,
  // and its reviewer counted online, after they left it. A page restored
  // from that cache reloads, for a fresh snapshot on a new socket. (1000 is
  // a normal close: the ws extension does not reconnect after it.)
  var sockets = [];
  if (window.htmx && window.htmx.createWebSocket) {
    var createWebSocket = window.htmx.createWebSocket;
    window.htmx.createWebSocket = function (url) {
      var socket = createWebSocket(url);
      sockets.push(socket);
      return socket;
    };
  }
  window.addEventListener("pagehide", function () {
    sockets.forEach(function (socket) { socket.close(1000, "page hidden"); });
    sockets = [];
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { location.reload(); }
  });
  setInterval(tick, 1000);
  window.peergate = { tick: tick };
})();

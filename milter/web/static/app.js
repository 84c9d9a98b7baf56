// mailwarden review: progressive enhancement only. Every page works without this file.
// Live updates (server-sent events from /events), optional browser notifications, j/k/o keys.
"use strict";
(function () {
  function announce(item) {
    var box = document.getElementById("live");
    var table = document.querySelector("#held tbody");
    if (box) {
      box.hidden = false;
      box.textContent = "";
      var link = document.createElement("a");
      link.href = item.url;
      link.textContent = "New hold: " + item.queue_id + " (" + item.types.join(", ") + ")";
      box.appendChild(link);
    }
    if (table) {
      var row = document.createElement("tr");
      row.className = "new";
      var cell = document.createElement("td");
      cell.colSpan = 10;
      var a = document.createElement("a");
      a.href = item.url;
      a.className = "open";
      a.textContent = item.queue_id + " from " + item.sender + ": " + item.types.join(", ");
      cell.appendChild(a);
      row.appendChild(cell);
      table.insertBefore(row, table.firstChild);
    }
    if (window.Notification && Notification.permission === "granted") {
      new Notification("mailwarden: message held", { body: item.queue_id + " " + item.types.join(", ") });
    }
  }

  function live() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    source.addEventListener("held", function (ev) { announce(JSON.parse(ev.data)); });
  }

  function notifications() {
    var button = document.getElementById("notify");
    if (!button || !window.Notification || Notification.permission !== "default") { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      Notification.requestPermission().then(function () { button.hidden = true; });
    });
  }

  function keys() {
    var rows = document.querySelectorAll("#held tbody tr");
    var at = -1;
    document.addEventListener("keydown", function (ev) {
      if (/INPUT|SELECT|TEXTAREA/.test(ev.target.tagName) || !rows.length) { return; }
      if (ev.key === "j" || ev.key === "k") {
        if (at >= 0) { rows[at].classList.remove("focus"); }
        at = Math.max(0, Math.min(rows.length - 1, at + (ev.key === "j" ? 1 : -1)));
        rows[at].classList.add("focus");
      } else if (ev.key === "o" && at >= 0) {
        var link = rows[at].querySelector("a.open");
        if (link) { window.location = link.href; }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { live(); notifications(); keys(); });
})();

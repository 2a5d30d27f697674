// replenish: the page's only script (no library, nothing loaded from elsewhere).
// Live alerts: each alert on the stream reloads the table's rows, with the page's filters.
(function () {
  "use strict";
  var rows = document.getElementById("alert-rows");
  var status = document.getElementById("live-status");
  if (rows && window.EventSource) {
    var pending = false;
    var refresh = function () {
      pending = false;
      fetch(rows.getAttribute("data-live") + window.location.search, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          rows.innerHTML = html;
          if (status) { status.textContent = "Updated " + new Date().toLocaleTimeString() + "."; }
        });
    };
    var source = new EventSource("/ui/alerts/stream");
    source.addEventListener("alert", function () {
      if (!pending) { pending = true; window.setTimeout(refresh, 100); }
    });
    source.onopen = function () { rows.setAttribute("data-connected", "true"); };
    source.onerror = function () {
      rows.setAttribute("data-connected", "false");
      if (status) { status.textContent = "Reconnecting…"; }
    };
  }
  var print = document.querySelectorAll("[data-print]");
  for (var i = 0; i < print.length; i++) {
    print[i].addEventListener("click", function () { window.print(); });
  }
})();

// vigil console: live updates of the incident list and local times. No inline script: the
// Content-Security-Policy forbids it. Without JavaScript every page still works.
"use strict";

function localTimes(root) {
  root.querySelectorAll("time.local[datetime]").forEach(function (t) {
    if (t.dataset.done) { return; }
    var d = new Date(t.getAttribute("datetime"));
    if (isNaN(d)) { return; }
    var span = document.createElement("span");
    span.className = "localtime";
    span.textContent = " (" + d.toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" }) + " yours)";
    t.after(span);
    t.dataset.done = "1";
  });
}

function live(tbody) {
  var url = tbody.getAttribute("data-live");
  var stopped = false;
  var last = null;
  function poll() {
    if (stopped) { return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok || r.redirected) { stopped = true; return null; }
        return r.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined && html !== last) {
          tbody.innerHTML = html;
          last = html;
          localTimes(tbody);
        }
      })
      .catch(function () {})
      .finally(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 3000);
}

document.addEventListener("DOMContentLoaded", function () {
  localTimes(document);
  var tbody = document.querySelector("tbody[data-live]");
  if (tbody) { live(tbody); }
});

// jobfleet web UI. Keeps the element marked data-live fresh by fetching its fragment every
// 2 s, and follows a running job's events (data-events: status, progress, log lines). The
// pages work without it (the overview falls back to a <noscript> refresh).
(function () {
  "use strict";

  var live = document.querySelector("[data-live]");
  if (live) {
    var url = live.getAttribute("data-live");
    var refresh = function () {
      // Never swap the part a keyboard user is on, nor a hidden page.
      if (document.hidden || live.contains(document.activeElement)) return;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.redirected || !r.ok ? null : r.text(); })
        .then(function (html) {
          if (html !== null && !live.contains(document.activeElement)) live.innerHTML = html;
        })
        .catch(function () {});
    };
    setInterval(refresh, 2000);
  }

  var follow = document.querySelector("[data-events]");
  if (follow && window.EventSource) {
    var logs = document.getElementById("logs");
    var source = new EventSource(follow.getAttribute("data-events"));
    var data = function (e) {
      try { return JSON.parse(e.data); } catch (_) { return null; }
    };
    // Values go in as text, never as markup.
    source.addEventListener("log", function (e) {
      var line = data(e);
      if (!line || !logs) return;
      var stamp = document.createElement("span");
      stamp.className = "muted";
      stamp.textContent = line.at + " #" + line.attempt;
      logs.appendChild(stamp);
      logs.appendChild(document.createTextNode(" " + line.line + "\n"));
      logs.hidden = false;
      var none = document.getElementById("no-logs");
      if (none) none.hidden = true;
    });
    source.addEventListener("progress", function (e) {
      var p = data(e);
      var shown = document.getElementById("progress");
      if (p && shown) shown.textContent = p.percent + " % " + (p.message || "");
    });
    source.addEventListener("status", function (e) {
      var job = data(e);
      if (!job) return;
      var badge = document.getElementById("job-status");
      if (badge && badge.textContent !== job.status) {
        badge.textContent = job.status;
        badge.className = "badge s-" + job.status;
      }
      // Ended: the page again, with its result and the actions it allows now.
      if (["finished", "failed", "canceled"].indexOf(job.status) >= 0) {
        source.close();
        window.location.reload();
      }
    });
    source.addEventListener("gone", function () { source.close(); });
  }
})();

// jobfleet web UI: keeps the element marked data-live fresh by fetching its fragment every
// 2 s. The pages work without it (the overview falls back to a <noscript> refresh).
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) return;
  var url = live.getAttribute("data-live");
  function refresh() {
    // Never swap the part a keyboard user is on, nor a hidden page.
    if (document.hidden || live.contains(document.activeElement)) return;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) return null;
        return r.text();
      })
      .then(function (html) {
        if (html !== null && !live.contains(document.activeElement)) live.innerHTML = html;
      })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();

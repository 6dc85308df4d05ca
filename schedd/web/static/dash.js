// schedd dashboard: keeps the live part of a page current without a reload.
// Every 2 s it fetches the same URL with _fragment=1 and swaps #live's content, keeping the
// job checkboxes the user ticked. It waits while the user is typing in the live part, while the
// tab is hidden, and while a request is in flight. No other script, no external resource.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var busy = false;

  function fragmentUrl() {
    var u = new URL(window.location.href);
    u.searchParams.set("_fragment", "1");
    return u.toString();
  }

  function checkedNames() {
    var out = {};
    live.querySelectorAll("input[type=checkbox][name=names]:checked").forEach(function (b) {
      out[b.value] = true;
    });
    return out;
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    if (live.contains(document.activeElement) && document.activeElement.tagName === "INPUT") { return; }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var keep = checkedNames();
        live.innerHTML = html;
        live.querySelectorAll("input[type=checkbox][name=names]").forEach(function (b) {
          if (keep[b.value]) { b.checked = true; }
        });
        var stamp = document.getElementById("updated");
        if (stamp) { stamp.textContent = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC"; }
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the node may be down: the next tick tries again */ })
      .finally(function () { busy = false; });
  }

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.getAttribute && t.getAttribute("data-all")) {
      live.querySelectorAll("input[type=checkbox][name=" + t.getAttribute("data-all") + "]").forEach(function (b) {
        b.checked = t.checked;
      });
    }
  });
  window.setInterval(refresh, 2000);
})();

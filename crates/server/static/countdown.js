// The live countdown of a grant's page. The server's clock wins: the page carries the server's
// "now" at render time, and the countdown runs on the offset between it and this device's clock.
// Without JavaScript the page shows the time left at page load instead.
(function () {
  "use strict";
  var el = document.getElementById("expiry");
  var left = document.getElementById("left");
  if (!el || !left) return;
  var expires = Number(el.getAttribute("data-expires-ms"));
  var serverNow = Number(el.getAttribute("data-now-ms"));
  if (!expires || !serverNow) return;
  var skew = serverNow - Date.now();
  var reloaded = false;
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function tick() {
    var ms = expires - (Date.now() + skew);
    if (ms <= 0) {
      left.textContent = "(expired: the access has ended)";
      if (!reloaded) {
        reloaded = true;
        setTimeout(function () { window.location.reload(); }, 1500);
      }
      return;
    }
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    left.textContent = "(" + (h ? h + " h " + pad(m) + " min " : m + " min ") + pad(s % 60) + " s left)";
    setTimeout(tick, (ms % 1000) + 5);
  }
  tick();
})();

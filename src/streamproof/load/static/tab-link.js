// The Streaming tab's last row names the live charts page; Locust's tables render text only,
// so this turns that cell into a link (Locust's page is a React app: watch it render).
(function () {
  var MARK = "live charts: ";
  function link() {
    document.querySelectorAll("td").forEach(function (cell) {
      var text = cell.textContent || "";
      if (text.indexOf(MARK) !== 0 || cell.querySelector("a")) return;
      var a = document.createElement("a");
      a.href = "." + text.slice(MARK.length);
      a.textContent = text;
      a.id = "streamproof-charts-link";
      cell.textContent = "";
      cell.appendChild(a);
    });
  }
  new MutationObserver(link).observe(document.documentElement, {childList: true, subtree: true});
  link();
})();

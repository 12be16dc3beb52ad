// The viewer's one script (served as /static/app.js; the pages allow no inline script).
// Everything it inserts is HTML the server rendered and escaped.
"use strict";

(function () {
  // Live traces: poll the first page's rows and swap them in when they change.
  function live() {
    var tbody = document.getElementById("trace-rows");
    if (!tbody || !tbody.dataset.liveSrc) return;
    var status = document.getElementById("live-status");
    var src = tbody.dataset.liveSrc;
    var busy = false;
    function ids(root) {
      return Array.prototype.map.call(root.querySelectorAll("tr[data-id]"), function (r) {
        return r.dataset.id;
      });
    }
    function poll() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (res) {
          if (!res.ok) throw new Error("HTTP " + res.status);
          return res.text();
        })
        .then(function (html) {
          var before = ids(tbody);
          var seen = {};
          before.forEach(function (id) { seen[id] = true; });
          var t = document.createElement("tbody");
          t.innerHTML = html;
          if (t.innerHTML === tbody.innerHTML.replace(/ new/g, "")) return;
          Array.prototype.forEach.call(t.querySelectorAll("tr[data-id]"), function (r) {
            if (!seen[r.dataset.id]) r.classList.add("new");
          });
          tbody.innerHTML = t.innerHTML;
        })
        .then(function () {
          if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
        })
        .catch(function (e) {
          if (status) status.textContent = "Live: cannot update (" + e.message + "), retrying.";
        })
        .then(function () { busy = false; });
    }
    setInterval(poll, 2000);
  }

  // The waterfall: select a span (detail fetched from the server), fold subtrees.
  function waterfall() {
    var wf = document.getElementById("waterfall");
    if (!wf) return;
    var trace = wf.dataset.trace;
    var detail = document.getElementById("detail");
    wf.addEventListener("click", function (ev) {
      var tog = ev.target.closest("button.tog");
      if (tog) {
        ev.preventDefault();
        fold(tog.closest(".wrow"), tog);
        return;
      }
      var link = ev.target.closest("a.sel");
      if (!link || !detail) return;
      ev.preventDefault();
      var span = link.dataset.span;
      Array.prototype.forEach.call(wf.querySelectorAll(".wrow.selected"), function (r) {
        r.classList.remove("selected");
      });
      link.closest(".wrow").classList.add("selected");
      detail.textContent = "Loading…";
      fetch("/traces/" + encodeURIComponent(trace) + "/spans/" + encodeURIComponent(span), {
        credentials: "same-origin",
      })
        .then(function (res) {
          return res.text().then(function (t) {
            if (!res.ok) throw new Error("HTTP " + res.status);
            return t;
          });
        })
        .then(function (html) {
          detail.innerHTML = html;
          history.replaceState(null, "", "?span=" + encodeURIComponent(span) + "#detail");
          detail.scrollIntoView({ block: "nearest" });
        })
        .catch(function (e) {
          detail.textContent = "Cannot load the span: " + e.message;
        });
    });
  }

  function fold(row, tog) {
    var depth = Number(row.dataset.depth);
    var folding = tog.getAttribute("aria-expanded") === "true";
    tog.setAttribute("aria-expanded", folding ? "false" : "true");
    tog.textContent = folding ? "▸" : "▾";
    for (var r = row.nextElementSibling; r && Number(r.dataset.depth) > depth; r = r.nextElementSibling) {
      r.hidden = folding;
      var t = r.querySelector("button.tog");
      if (!folding && t) {
        t.setAttribute("aria-expanded", "true");
        t.textContent = "▾";
      }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    live();
    waterfall();
  });
})();

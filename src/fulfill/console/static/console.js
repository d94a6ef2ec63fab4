// Progressive enhancement only: every page works without it.
// Times are shown in the viewer's zone (the UTC value stays in the title, shown on hover);
// expiry countdowns tick once a second.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.textContent = when.toLocaleString();
      }
    });
  }
  function countdowns() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.floor(Number(el.getAttribute("data-countdown")) - now);
      if (left <= 0) {
        el.textContent = "expired";
        var card = el.closest(".card");
        if (card) {
          card.classList.add("expired");
          card.querySelectorAll("button.approve").forEach(function (b) { b.disabled = true; });
        }
        return;
      }
      var d = Math.floor(left / 86400), h = Math.floor((left % 86400) / 3600);
      var m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = "in " + (d ? d + " d " + h + " h" : (h ? h + " h " + m + " min" : m + " min " + s + " s"));
    });
  }
  // The approvals page's selection: "select every one on this page" and how many are selected.
  function selection() {
    document.querySelectorAll("[data-select-all]").forEach(function (all) {
      var formId = all.getAttribute("data-select-all");
      var boxes = function () {
        return document.querySelectorAll('input[type=checkbox][name=selected][form="' + formId + '"]');
      };
      var shown = document.querySelector('[data-selected-count="' + formId + '"]');
      var update = function () {
        var list = boxes(), picked = 0;
        list.forEach(function (box) { if (box.checked) { picked += 1; } });
        all.checked = list.length > 0 && picked === list.length;
        all.indeterminate = picked > 0 && picked < list.length;
        if (shown) { shown.textContent = picked + " selected"; }
      };
      all.addEventListener("change", function () {
        boxes().forEach(function (box) { if (!box.disabled) { box.checked = all.checked; } });
        update();
      });
      boxes().forEach(function (box) { box.addEventListener("change", update); });
      update();
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    selection();
    localTimes(document);
    countdowns();
    setInterval(countdowns, 1000);
  });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(document); });
})();

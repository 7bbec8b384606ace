// The rating widget: slider and number kept in sync, keyboard shortcuts, active response time.
// Everything works without this file (plain form posts); it only makes the loop faster to use.
(function () {
  "use strict";

  var ARM_DELAY_MS = 450;  // a new card ignores clicks this long: no double click lands on it
  var activeMs = 0;
  var lastTick = null;

  function tick() {
    var now = performance.now();
    if (lastTick !== null && document.visibilityState === "visible") activeMs += now - lastTick;
    lastTick = now;
  }
  setInterval(tick, 200);
  document.addEventListener("visibilitychange", tick);

  function resetTimer() { activeMs = 0; lastTick = performance.now(); }

  function clamp(value, input) {
    var min = Number(input.min), max = Number(input.max);
    return Math.max(min, Math.min(max, value));
  }

  function wire(root) {
    root.querySelectorAll(".rating-widget").forEach(function (widget) {
      if (widget.dataset.wired) return;
      widget.dataset.wired = "1";
      var slider = widget.querySelector(".rating-slider");
      var number = widget.querySelector(".rating-number");
      slider.addEventListener("input", function () {
        number.value = slider.value;
        slider.dataset.untouched = "";
      });
      number.addEventListener("input", function () {
        if (number.value !== "" && !isNaN(Number(number.value))) {
          slider.value = clamp(Number(number.value), slider);
          slider.dataset.untouched = "";
        }
      });
      number.addEventListener("keydown", function (event) {
        var step = event.shiftKey ? 10 : 1;
        var delta = { ArrowRight: step, ArrowLeft: -step, PageUp: 10, PageDown: -10 }[event.key];
        if (delta === undefined) return;
        event.preventDefault();
        var current = number.value === "" ? Number(slider.value) : Number(number.value);
        number.value = clamp(current + delta, number);
        number.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
    if (root.querySelector && root.querySelector("#rating-form")) {
      resetTimer();
      var armed = root.querySelectorAll("#rating-form button[data-arm]");
      setTimeout(function () { armed.forEach(function (b) { b.disabled = false; }); }, ARM_DELAY_MS);
    }
  }

  document.addEventListener("keydown", function (event) {
    var form = document.getElementById("rating-form");
    if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
    var number = form.querySelector(".rating-number");
    if ((event.key === "u" || event.key === "U") && !event.repeat) {
      var unsure = document.getElementById("unsure");
      if (unsure && !unsure.disabled) { event.preventDefault(); unsure.click(); }
      return;
    }
    // Digits typed anywhere on the page go to the rating field.
    if (/^[0-9]$/.test(event.key) && document.activeElement !== number) {
      event.preventDefault();
      number.focus();
      number.value = (number.value + event.key).replace(/^0+(?=\d)/, "").slice(0, String(number.max || "100").length);
      number.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });

  // The second click of a double click never submits (it would answer the card that replaced this one).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#rating-form button");
    if (button && event.detail > 1) { event.preventDefault(); event.stopPropagation(); }
  }, true);

  // Response time goes with every rating submission (htmx and plain posts alike).
  document.addEventListener("submit", function (event) {
    var rt = event.target.querySelector && event.target.querySelector(".rt-ms");
    if (rt) { tick(); rt.value = Math.round(activeMs); }
  }, true);
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "rating-form") {
      tick();
      event.detail.parameters["rt_ms"] = Math.round(activeMs);
    }
  });

  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:load", function (event) { wire(event.detail.elt); });
})();

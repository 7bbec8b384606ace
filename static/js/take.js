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

  // The slider shows a value only when the number box holds one it can show: until then (and while the box
  // is empty or off the scale) its thumb is hidden (site.css), so nobody is anchored at the middle.
  function agree(slider, number) {
    var value = number.value === "" ? NaN : Number(number.value);
    var min = Number(slider.min), max = Number(slider.max), step = Number(slider.step) || 1;
    if (!isNaN(value) && value >= min && value <= max && (value - min) % step === 0) {
      slider.value = value;
      slider.dataset.untouched = "";
    } else {
      slider.dataset.untouched = "1";
    }
  }

  function changed(widget) { widget.dispatchEvent(new Event("rating:changed", { bubbles: true })); }

  function wire(root) {
    root.querySelectorAll(".rating-widget").forEach(function (widget) {
      if (widget.dataset.wired) return;
      widget.dataset.wired = "1";
      var slider = widget.querySelector(".rating-slider");
      var number = widget.querySelector(".rating-number");
      agree(slider, number);
      slider.addEventListener("input", function () {
        number.value = slider.value;
        slider.dataset.untouched = "";
        changed(widget);
      });
      // A click on the hidden thumb's own spot moves nothing (no input event): it still chooses that value.
      slider.addEventListener("pointerup", function () {
        if (slider.dataset.untouched) { number.value = slider.value; slider.dataset.untouched = ""; changed(widget); }
      });
      number.addEventListener("input", function () { agree(slider, number); changed(widget); });
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
      setTimeout(function () {
        armed.forEach(function (b) { b.disabled = false; b.removeAttribute("data-arm"); });
      }, ARM_DELAY_MS);
    }
  }

  // The practice item: what its answer would have been stored as, the server's rules (rating_value_parse);
  // Enter or "Try it" shows it here and stores nothing. Starting the rating is a separate button.
  function practiceText(result, raw, unsure) {
    var min = Number(result.dataset.scaleMin), max = Number(result.dataset.scaleMax);
    var step = Number(result.dataset.scaleStep) || 1;
    if (unsure) return { stored: "Unsure" };
    var text = (raw || "").trim();
    if (text === "") return { error: "Choose a rating from " + min + " to " + max + ", or mark Unsure." };
    var value = Number(text);
    if (isNaN(value)) return { error: "The rating must be a number from " + min + " to " + max + "." };
    if (value < min || value > max) return { error: "The rating must be between " + min + " and " + max + "." };
    if (value !== Math.floor(value) || (value - min) % step) {
      return { error: step === 1 ? "The rating must be a whole number." : "The rating must be " + min + " to " + max + " in steps of " + step + "." };
    }
    return { stored: String(value) };
  }

  function showPractice(form, unsure) {
    var result = document.getElementById("practice-result");
    if (!result) return;
    var answer = practiceText(result, form.querySelector(".rating-number").value, unsure);
    result.textContent = "";
    if (answer.error) { result.textContent = answer.error; return; }
    result.append("Your practice answer would have been stored as ");
    var strong = document.createElement("strong");
    strong.textContent = answer.stored;
    result.append(strong, ". It is not saved.");
  }

  document.addEventListener("submit", function (event) {
    if (event.target.id !== "practice-form") return;
    event.preventDefault();
    showPractice(event.target, event.submitter && event.submitter.id === "practice-unsure");
  });
  document.addEventListener("rating:changed", function (event) {
    var form = event.target.closest && event.target.closest("#practice-form");
    if (form && form.querySelector(".rating-number").value !== "") showPractice(form, false);
  });

  document.addEventListener("keydown", function (event) {
    var form = document.getElementById("rating-form");
    if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
    // Typing in the change-previous-answer form belongs to that form.
    if (event.target.closest && event.target.closest("#previous-answer")) return;
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

  // Questionnaire drafts: the page's answers survive a refresh (sessionStorage, this tab only, dropped on
  // submit). Nothing is restored over a page the server sent back with the answers and their errors.
  function draftOf(form) {
    var answers = {};
    form.querySelectorAll("input[type=radio]:checked, input[type=checkbox]:checked").forEach(function (input) {
      (answers[input.name] = answers[input.name] || []).push(input.value);
    });
    form.querySelectorAll("input[type=text]").forEach(function (input) {
      if (input.value) answers[input.name] = [input.value];
    });
    return answers;
  }

  function draftSave(form) {
    try { sessionStorage.setItem(form.dataset.draft, JSON.stringify(draftOf(form))); } catch (e) { /* storage off */ }
  }

  function draftRestore(form) {
    var saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(form.dataset.draft) || "null"); } catch (e) { saved = null; }
    if (!saved || !form.dataset.restore) return;
    form.querySelectorAll("input").forEach(function (input) {
      var values = saved[input.name];
      if (!values) return;
      if (input.type === "radio" || input.type === "checkbox") input.checked = values.indexOf(input.value) !== -1;
      else if (input.type === "text") input.value = values[0];
    });
  }

  function wireDrafts() {
    var form = document.querySelector("form[data-draft]");
    if (!form) return;
    draftRestore(form);
    form.addEventListener("change", function () { draftSave(form); });
    form.addEventListener("input", function (event) {
      // Typing beside "Other" chooses "Other".
      var box = event.target.closest && event.target.closest(".other-text");
      var option = box && box.previousElementSibling && box.previousElementSibling.querySelector("input");
      if (option && event.target.value.trim() !== "") option.checked = true;
      draftSave(form);
    });
    form.addEventListener("submit", function () {
      try { sessionStorage.removeItem(form.dataset.draft); } catch (e) { /* storage off */ }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wire(document); wireDrafts(); });
  document.addEventListener("htmx:load", function (event) { wire(event.detail.elt); });
})();

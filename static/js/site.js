// Behaviour every page shares, kept in this file because the Content-Security-Policy allows scripts from
// this site only: no inline <script>, no on…= attributes, no eval (so no hx-on or js: values either).
(function () {
  "use strict";

  var ERROR_REGION = "htmx-error";  // config.errors.ERROR_TARGET; in base.html

  function region() { return document.getElementById(ERROR_REGION); }

  function showText(message) {
    var box = region();
    if (!box) return;
    box.textContent = "";  // text only: nothing from a response is parsed as markup here
    var p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    var dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "link";
    dismiss.setAttribute("data-dismiss-error", "");
    dismiss.textContent = "Dismiss";
    box.appendChild(p);
    box.appendChild(dismiss);
  }

  // htmx does not swap 4xx answers by default. The server's error partials (config.errors.error_response)
  // are aimed at the error region with HX-Retarget; let exactly those through so the user sees why.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.status < 500 && xhr.getResponseHeader("HX-Retarget") === "#" + ERROR_REGION) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Any other failed request (403, 404, 500…) would otherwise fail silently: say so, as text.
  document.addEventListener("htmx:responseError", function (event) {
    showText("The request failed (HTTP " + event.detail.xhr.status + "). Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showText("The server could not be reached. Check your connection and try again.");
  });

  // A new request made from a form (a person acting) clears the previous error; polling does not.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var box = region();
    if (box && event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form")) box.textContent = "";
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-dismiss-error]")) {
      var box = region();
      if (box) box.textContent = "";
    }
  });

  // <input type="range" data-output="ID"> shows its value in the <output id="ID"> next to it.
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=range][data-output]")) return;
    var output = document.getElementById(input.getAttribute("data-output"));
    if (output) output.value = Number(input.value).toFixed(2);
  });
})();

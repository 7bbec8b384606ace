// Behaviour every page shares, kept in this file because the Content-Security-Policy allows scripts from
// this site only: no inline <script>, no on…= attributes, no eval (so no hx-on or js: values either).
(function () {
  "use strict";

  var ERROR_REGION = "htmx-error";  // config.errors.ERROR_TARGET; in base.html

  function region() { return document.getElementById(ERROR_REGION); }

  // The element an error of this request belongs in: the form's own error box when the form names one
  // (data-error-target="#id"), else the page's error region.
  function errorBox(elt) {
    var form = elt && elt.closest ? elt.closest("[data-error-target]") : null;
    var own = form ? document.querySelector(form.getAttribute("data-error-target")) : null;
    return own || region();
  }

  function showText(message, elt) {
    var box = errorBox(elt);
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

  // htmx does not swap 4xx answers by default. A 4xx answer that names its target (HX-Retarget) is one the
  // server rendered to be seen: the error partial of config.errors.error_response (aimed at the page's
  // error region), or a form re-rendered with its field errors (aimed at the form's section). Let exactly
  // those through. An error partial aimed at the page's region goes to the form's own error box instead
  // when the form has one (data-error-target), next to what the person just did.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    var retarget = xhr.getResponseHeader("HX-Retarget");
    if (xhr.status < 400 || xhr.status >= 500 || !retarget) return;
    event.detail.shouldSwap = true;
    event.detail.isError = false;
    if (retarget === "#" + ERROR_REGION) {
      var box = errorBox(event.detail.requestConfig && event.detail.requestConfig.elt || event.detail.elt);
      if (box) event.detail.target = box;
    }
  });

  // Any other failed request (403, 404, 500…) would otherwise fail silently: say so, as text.
  document.addEventListener("htmx:responseError", function (event) {
    showText("The request failed (HTTP " + event.detail.xhr.status + "). Reload the page and try again.", event.detail.elt);
  });
  document.addEventListener("htmx:sendError", function (event) {
    showText("The server could not be reached. Check your connection and try again.", event.detail.elt);
  });

  // A new request made from a form (a person acting) clears the previous error; polling does not.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.closest || !elt.closest("form")) return;
    var box = region();
    if (box) box.textContent = "";
    var own = errorBox(elt);
    if (own) own.textContent = "";
  });

  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest && event.target.closest("[data-dismiss-error]");
    if (dismiss) {
      var box = dismiss.closest(".form-error") || region();
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

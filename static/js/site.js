// Behaviour every page shares, kept in this file because the Content-Security-Policy allows scripts from
// this site only: no inline <script>, no on…= attributes, no eval (so no hx-on or js: values either).
(function () {
  "use strict";

  var ERROR_REGION = "htmx-error";  // config.errors.ERROR_TARGET; in base.html

  function region() { return document.getElementById(ERROR_REGION); }

  // The element an error of this request belongs in: the form's own error box when the form names one
  // (data-error-target="#id"); else a box made next to the form that sent it (so that every htmx form
  // shows its errors where the person is looking, without each template declaring a box); else the
  // page's error region.
  function errorBox(elt) {
    if (!elt || !elt.closest) return region();
    var named = elt.closest("[data-error-target]");
    var own = named ? document.querySelector(named.getAttribute("data-error-target")) : null;
    if (own) return own;
    var form = elt.closest("form");
    if (!form || !form.parentNode) return region();
    var next = form.nextElementSibling;
    if (next && next.hasAttribute("data-auto-error")) return next;
    var box = document.createElement("div");
    box.className = "form-error";
    box.setAttribute("data-auto-error", "");
    form.parentNode.insertBefore(box, form.nextSibling);
    return box;
  }

  // The message of an error page or partial the server sent (its .error element), as text; null if none.
  function messageOf(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/html") !== 0 || !xhr.responseText) return null;
    // DOMParser builds an inert document: nothing in it runs or loads.
    var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    var node = doc.querySelector("main .error, .error");
    var text = node ? node.textContent.trim() : "";
    return text ? text.slice(0, 500) : null;
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

  // Any other failed request (403, 404, 409, 500…) would otherwise fail silently: say so, as text, with the
  // server's own message when its answer has one (a 403 says which role is needed).
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var said = xhr.status < 500 ? messageOf(xhr) : null;
    showText(said ? said + " (HTTP " + xhr.status + ")"
                  : "The request failed (HTTP " + xhr.status + "). Reload the page and try again.", event.detail.elt);
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
    var named = elt.closest("[data-error-target]");
    var own = named ? document.querySelector(named.getAttribute("data-error-target")) : null;
    var auto = elt.closest("form").nextElementSibling;
    if (own) own.textContent = "";
    if (auto && auto.hasAttribute("data-auto-error")) auto.textContent = "";
  });

  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest && event.target.closest("[data-dismiss-error]");
    if (dismiss) {
      var box = dismiss.closest(".form-error") || region();
      if (box) box.textContent = "";
    }
  });

  // The benchmark form's run-time estimate (<output data-estimate-form> inside the form): the ticked
  // predictors' seconds per split and seed (data-seconds) × splits × seeds; the same text as
  // benchmark.evaluation.run_estimate_text.
  function estimateUpdate(form) {
    var out = form.querySelector("output[data-estimate-form]");
    if (!out) return;
    var perRun = 0, unmeasured = 0;
    form.querySelectorAll("input[name=predictors]:checked").forEach(function (box) {
      var seconds = box.getAttribute("data-seconds");
      if (seconds === null) unmeasured += 1; else perRun += Number(seconds);
    });
    var splits = Number((form.querySelector("[name=splits]") || {}).value) || 0;
    var seeds = Number((form.querySelector("[name=seeds]") || {}).value) || 0;
    var total = perRun * splits * seeds;
    var text = total < 90 ? "about " + Math.round(total) + " s" : "about " + Math.round(total / 60) + " min";
    if (unmeasured) text += ", plus " + unmeasured + " predictor(s) not measured";
    out.value = text;
  }
  function estimateFrom(event) {
    var form = event.target.closest && event.target.closest("form");
    if (form && form.querySelector("output[data-estimate-form]")) estimateUpdate(form);
  }
  document.addEventListener("change", estimateFrom);
  document.addEventListener("input", estimateFrom);

  // Sortable tables: a <th> holding <button data-sort> sorts its table's body by that column, ascending
  // then descending (aria-sort says which). A button is reached with Tab and pressed with Enter or Space.
  // Numbers sort as numbers (a cell's data-sort-value first, else its text; "—" and empty cells last).
  function sortKey(cell) {
    if (!cell) return { empty: true };
    var raw = cell.hasAttribute("data-sort-value") ? cell.getAttribute("data-sort-value") : cell.textContent;
    raw = raw.trim();
    if (raw === "" || raw === "—") return { empty: true };
    var number = Number(raw.replace(/[−–]/g, "-").replace(/[^0-9eE+\-.]/g, ""));
    var numeric = /^[−\-+]?[0-9.]/.test(raw) && !isNaN(number);
    return { empty: false, numeric: numeric, number: number, text: raw.toLowerCase() };
  }
  function compareKeys(a, b) {
    if (a.empty || b.empty) return a.empty === b.empty ? 0 : (a.empty ? 1 : -1);
    if (a.numeric && b.numeric) return a.number - b.number;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("th > button[data-sort]");
    if (!button) return;
    var th = button.parentNode, row = th.parentNode, table = th.closest("table");
    var body = table && table.tBodies[0];
    if (!body) return;
    var index = Array.prototype.indexOf.call(row.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    row.querySelectorAll("th[aria-sort]").forEach(function (other) { other.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows).map(function (tr, position) {
      return { tr: tr, key: sortKey(tr.cells[index]), position: position };
    });
    rows.sort(function (a, b) {
      var order = compareKeys(a.key, b.key);
      if (!a.key.empty && !b.key.empty && !ascending) order = -order;  // empty cells stay last either way
      return order || a.position - b.position;
    });
    rows.forEach(function (item) { body.appendChild(item.tr); });
  });

  // <input type="range" data-output="ID"> shows its value in the <output id="ID"> next to it.
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=range][data-output]")) return;
    var output = document.getElementById(input.getAttribute("data-output"));
    if (output) output.value = Number(input.value).toFixed(2);
  });
})();

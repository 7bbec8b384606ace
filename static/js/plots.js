// Draw every <div class="plot" data-figure='{"data":…,"layout":…}'> with the locally served Plotly,
// on page load and after each htmx swap. Each plot can be saved as PNG (modebar) or SVG.
(function () {
  "use strict";
  var svgButton = {
    name: "Download plot as SVG",
    icon: null,
    click: function (gd) { Plotly.downloadImage(gd, { format: "svg", filename: gd.dataset.name || "plot" }); }
  };

  // One plot per task: the browser paints the first plot before it draws the next, instead of showing
  // nothing until every plot of the page is drawn (bench/chart_page.py times the first plot).
  function draw(root) {
    if (typeof Plotly === "undefined") return;
    svgButton.icon = Plotly.Icons.disk;
    var queue = Array.prototype.slice.call((root.querySelectorAll ? root : document).querySelectorAll(".plot[data-figure]"));
    (function next() {
      var el = queue.shift();
      if (!el) return;
      if (el.isConnected) drawOne(el);  // a poll may have swapped it out meanwhile
      if (queue.length) setTimeout(next, 0);
    })();
  }

  function drawOne(el) {
    var figure = JSON.parse(el.dataset.figure);
    // On a narrow screen the modebar (shown at all times on touch screens) spans the top of the plot:
    // the title goes below it rather than under its buttons.
    if (el.clientWidth < 560 && figure.layout && figure.layout.title) {
      var margin = figure.layout.margin || {};
      figure.layout.margin = Object.assign({}, margin, { t: Math.max(margin.t || 40, 72) });
      figure.layout.title = Object.assign({}, figure.layout.title, { yref: "container", y: 1, yanchor: "top", pad: { t: 36 } });
    }
    // No "Produced with Plotly" logo and no share / "Edit in Chart Studio" button: the figures hold
    // demographic data, and nothing here may send a plot to another site (plotly.js 4 shows the
    // share button by default; an empty server URL disables it even if re-enabled).
    var config = {
      responsive: true, displaylogo: false, showSendToCloud: false, showEditInChartStudio: false,
      plotlyServerURL: "",
      toImageButtonOptions: { format: "png", filename: el.dataset.name || "plot", scale: 2 },
      modeBarButtonsToAdd: [svgButton]
    };
    Plotly.react(el, figure.data, figure.layout, config);
    if (el.dataset.clickUrl && !el.dataset.clickWired) {
      el.dataset.clickWired = "1";
      el.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        if (point && point.customdata) window.location = el.dataset.clickUrl.replace("__ID__", encodeURIComponent(point.customdata));
      });
    }
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.detail.elt); });
})();

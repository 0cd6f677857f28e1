(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var tip = document.getElementById("tip");
  function num(v) { return v.toLocaleString("en-US", {maximumFractionDigits: 3}); }
  function pct(q) { return (q * 100).toFixed(Math.max(0, Math.min(5, Math.ceil(-Math.log10(1 - q + 1e-12)) - 1))) + " %"; }
  function line(color, text) {
    var d = document.createElement("div");
    if (color) { var i = document.createElement("i"); i.style.background = color; d.appendChild(i); }
    d.appendChild(document.createTextNode(text));
    return d;
  }
  function at(points, x) {
    var lo = 0, hi = points.length - 1;
    while (lo < hi) { var m = (lo + hi) >> 1; if (points[m][0] < x) lo = m + 1; else hi = m; }
    return points.length && points[lo][0] === x ? points[lo][1] : null;
  }
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var d = data[svg.dataset.chart];
    if (!d) return;
    var plot = svg.dataset.plot.split(",").map(Number);
    var dom = svg.dataset.xdomain.split(",").map(Number);
    var nines = d.xscale === "nines";
    var tx = nines ? function (q) { return q >= 1 ? dom[1] : -Math.log10(1 - q); } : function (s) { return s; };
    var cursor = svg.querySelector(".cursor");
    var grid = nines && d.series.length ? d.series[0].points.map(function (p) { return p[0]; }) : null;
    function hide() { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); }
    svg.addEventListener("mousemove", function (e) {
      var pt = svg.createSVGPoint(); pt.x = e.clientX; pt.y = e.clientY;
      var p = pt.matrixTransform(svg.getScreenCTM().inverse());
      if (p.x < plot[0] || p.x > plot[0] + plot[2] || p.y < plot[1] || p.y > plot[1] + plot[3]) { hide(); return; }
      var x = dom[0] + (p.x - plot[0]) / plot[2] * (dom[1] - dom[0]), key;
      if (grid) {
        key = grid[0];
        grid.forEach(function (q) { if (Math.abs(tx(q) - x) < Math.abs(tx(key) - x)) key = q; });
      } else {
        key = Math.max(dom[0], Math.min(dom[1], Math.round(x)));
      }
      tip.textContent = "";
      tip.appendChild(line(null, nines ? "percentile " + pct(key) : "second " + key));
      d.series.forEach(function (s) {
        var v = at(s.points, key);
        if (v === null && d.sparse) v = 0;
        if (v === null) return;
        tip.appendChild(line(s.color, s.label + ": " + (d.unit === "ms" && v === 0 ? "—" : num(v) + " " + d.unit)));
      });
      var cx = plot[0] + (tx(key) - dom[0]) / (dom[1] - dom[0]) * plot[2];
      cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx); cursor.setAttribute("visibility", "visible");
      tip.hidden = false;
      var left = e.clientX + 14, top = e.clientY + 14;
      if (left + tip.offsetWidth > window.innerWidth - 8) left = e.clientX - tip.offsetWidth - 14;
      if (top + tip.offsetHeight > window.innerHeight - 8) top = e.clientY - tip.offsetHeight - 14;
      tip.style.left = left + "px"; tip.style.top = top + "px";
    });
    svg.addEventListener("mouseleave", hide);
  });
})();

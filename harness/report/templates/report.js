(function () {
  "use strict";
  var table = document.getElementById("cells");
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var original = Array.prototype.slice.call(body.rows);
  var filterBox = document.getElementById("filter");
  var count = document.getElementById("count");
  var sortState = { col: -1, dir: 0 }; // dir: 1 ascending, -1 descending, 0 grouped (original order)
  var family = "";
  original.forEach(function (r, i) { // remember each row's place and family (from the group row above it)
    r.setAttribute("data-i", String(i));
    if (r.classList.contains("group")) { family = r.getAttribute("data-family"); }
    else { r.setAttribute("data-family", family); }
  });

  function cellRows() {
    return original.filter(function (r) { return !r.classList.contains("group"); });
  }

  function compare(a, b, i) {
    var x = a.cells[i].getAttribute("data-v"), y = b.cells[i].getAttribute("data-v");
    var nx = x === "" ? NaN : Number(x), ny = y === "" ? NaN : Number(y);
    if (x === "" && y !== "") return 1;   // missing values last, whatever the direction
    if (y === "" && x !== "") return -1;
    if (x === "" && y === "") return 0;
    var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
    return c * sortState.dir;
  }

  function applyFilter() {
    var q = filterBox.value.toLowerCase().trim();
    var shown = 0, total = 0;
    var visibleFamilies = {};
    cellRows().forEach(function (tr) {
      var hit = q === "" || tr.textContent.toLowerCase().indexOf(q) !== -1;
      tr.style.display = hit ? "" : "none";
      total += 1;
      if (hit) { shown += 1; visibleFamilies[tr.getAttribute("data-family")] = true; }
    });
    original.forEach(function (tr) {
      if (tr.classList.contains("group")) {
        var fam = tr.getAttribute("data-family");
        tr.style.display = (sortState.dir === 0 && visibleFamilies[fam]) ? "" : "none";
      }
    });
    count.textContent = shown + " of " + total + " rows";
  }

  function sortBy(i) {
    if (sortState.col !== i) { sortState = { col: i, dir: 1 }; }
    else { sortState.dir = sortState.dir === 1 ? -1 : (sortState.dir === -1 ? 0 : 1); }
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    var order;
    if (sortState.dir === 0) {
      order = original;
    } else {
      headers[i].setAttribute("aria-sort", sortState.dir === 1 ? "ascending" : "descending");
      var rows = cellRows();
      rows.sort(function (a, b) {
        return compare(a, b, i) || (Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i")));
      });
      order = rows.concat(original.filter(function (r) { return r.classList.contains("group"); }));
    }
    order.forEach(function (r) { body.appendChild(r); });
    applyFilter();
  }

  headers.forEach(function (th, i) {
    th.addEventListener("click", function () { sortBy(i); });
  });
  filterBox.addEventListener("input", applyFilter);
  applyFilter();

  var charts = document.querySelectorAll("div.chart[data-spec]");
  for (var k = 0; k < charts.length; k++) {
    var el = charts[k];
    var spec = JSON.parse(document.getElementById(el.getAttribute("data-spec")).textContent);
    if (typeof Plotly !== "undefined") {
      Plotly.newPlot(el, spec.data, spec.layout, { responsive: true, displaylogo: false });
    } else {
      el.textContent = "plotly.js did not load: chart not drawn.";
    }
  }
})();

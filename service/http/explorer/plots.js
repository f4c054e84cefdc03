// Points that are not images, shown as numbers: small line plots (SVG) and tables.

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function extent(seriesList) {
  let lo = Infinity, hi = -Infinity;
  for (const series of seriesList) for (const v of series) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
}

// Values against their index, one polyline per series (classes "series-0", "series-1", ... colour them),
// on a shared scale `range` ([lo, hi], default: the series' own).
export function linePlot(seriesList, { width = 160, height = 60, range, title } = {}) {
  const [lo, hi] = range ?? extent(seriesList);
  const svg = svgElement("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
  if (title) svg.append(Object.assign(svgElement("title", {}), { textContent: title }));
  svg.append(svgElement("rect", { x: 0, y: 0, width, height, class: "frame" }));
  seriesList.forEach((series, k) => {
    const step = series.length > 1 ? (width - 4) / (series.length - 1) : 0;
    const points = series.map((v, i) => {
      const x = 2 + i * step, y = height - 2 - ((v - lo) / (hi - lo)) * (height - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    svg.append(svgElement("polyline", { points: points.join(" "), class: `series-${k}` }));
  });
  return svg;
}

// Values as bars from zero, for per-feature scores.
export function barPlot(values, { width = 480, height = 120, title } = {}) {
  const [lo, hi] = extent([values, [0]]);
  const svg = svgElement("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
  if (title) svg.append(Object.assign(svgElement("title", {}), { textContent: title }));
  svg.append(svgElement("rect", { x: 0, y: 0, width, height, class: "frame" }));
  const y = (v) => height - 2 - ((v - lo) / (hi - lo)) * (height - 4);
  const barWidth = (width - 4) / values.length;
  values.forEach((v, i) => {
    const top = Math.min(y(v), y(0));
    svg.append(svgElement("rect", { x: 2 + i * barWidth, y: top, width: Math.max(barWidth - 1, 1),
                                    height: Math.max(Math.abs(y(v) - y(0)), 0.5), class: "bar" }));
  });
  const label = (text, x, yText, anchor) => {
    const node = svgElement("text", { x, y: yText, "text-anchor": anchor, class: "label" });
    node.textContent = text;
    svg.append(node);
  };
  label(hi.toPrecision(3), 6, 13, "start");
  if (lo < 0) label(lo.toPrecision(3), 6, height - 5, "start");
  label(`${values.length} features →`, width - 6, 13, "end");
  return svg;
}

const format = (v) => (Number.isInteger(v) ? String(v) : v.toPrecision(4));

// Rows of numbers as a table, a header row of column numbers, a label per row; collapsed in a <details>.
export function numberTable(rows, rowLabels, summary) {
  const details = document.createElement("details");
  details.append(Object.assign(document.createElement("summary"), { textContent: summary }));
  const table = document.createElement("table");
  table.className = "numbers";
  const head = table.createTHead().insertRow();
  head.append(Object.assign(document.createElement("th"), { textContent: "" }));
  rows[0].forEach((_, j) => head.append(Object.assign(document.createElement("th"), { textContent: j })));
  const body = table.createTBody();
  rows.forEach((row, i) => {
    const tr = body.insertRow();
    tr.append(Object.assign(document.createElement("th"), { textContent: rowLabels[i] }));
    row.forEach((v) => { tr.insertCell().textContent = format(v); });
  });
  details.append(table);
  return details;
}

export { extent };

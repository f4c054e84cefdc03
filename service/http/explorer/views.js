// The five views. Each takes the page's state, calls the API and fills its output element; image models get
// pictures (the service's PNGs where it draws them, the contract's formula for points the page holds), the others
// plots and tables of the same numbers.

import { drawHeatMap, drawPoint, heatLegend, scaleFor, tilesOf } from "./pictures.js";
import { pointOfImage, pointsOfArray, principalComponents, readNpy } from "./numbers.js";
import { barPlot, extent, linePlot, numberTable } from "./plots.js";

const MAX_POINTS = 256;
const element = (tag, properties = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
};
const value = (id) => document.getElementById(id).value;
const number = (id) => Number(value(id));
const flat = (nested) => nested.flat(Infinity);
const fixed = (v, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : String(v));

function figure(content, caption, index) {
  const node = element("figure", {}, ...[content].flat(), element("figcaption", { textContent: caption }));
  if (index !== undefined) node.dataset.index = String(index);
  return node;
}

// --- latents: what the map shows and what /decode takes back ---------------------------------------------------------

// /encode's answer as one row of numbers per point: the means (Gaussian latents), or the probabilities
// softmax(logits) of every group, flattened (categorical latents: E under q of the one-hot z).
function latentRows(model, answer) {
  if (!model.categorical) return answer.mu;
  return answer.logits.map((groups) => groups.flatMap((logits) => {
    const top = Math.max(...logits);
    const weights = logits.map((l) => Math.exp(l - top));
    const total = weights.reduce((a, b) => a + b, 0);
    return weights.map((w) => w / total);
  }));
}

// A row of the map's space as a latent /decode takes: itself (Gaussian), or [G][C] probabilities, clipped at 0
// and renormalised per group (a relaxed one-hot, which /decode accepts).
function decodable(model, row) {
  if (!model.categorical) return row;
  const groups = [];
  for (let g = 0; g < model.groups; g++) {
    const part = row.slice(g * model.categories, (g + 1) * model.categories).map((v) => Math.max(v, 0));
    const total = part.reduce((a, b) => a + b, 0);
    groups.push(total > 0 ? part.map((v) => v / total) : part.map(() => 1 / model.categories));
  }
  return groups;
}

// --- samples -----------------------------------------------------------------------------------------------------

export async function showSamples(api, state, output, current) {
  const model = state.model;
  const body = { model: model.ref, n: number("sample-n"), seed: number("sample-seed"),
                 temperature: number("sample-temperature"), mode: value("sample-mode") };
  const caption = `${body.n} draws, temperature ${body.temperature}, seed ${body.seed}, mode ${body.mode}`;
  if (model.layout) {
    // The service's PNG grid, its tiles set apart: the pixels are the service's, a few pixels of gap between them
    const columns = Math.ceil(Math.sqrt(body.n));
    const scale = Math.max(1, Math.floor(440 / (columns * model.layout.width)));
    const tiles = await tilesOf(await api.picture("sample", body), body.n, model.layout, scale);
    if (!current()) return;
    const grid = element("div", { className: "sample-grid" }, ...tiles);
    grid.style.gridTemplateColumns = `repeat(${columns}, max-content)`;
    grid.dataset.request = JSON.stringify(body);
    output.replaceChildren(grid);
    return caption;
  }
  const answer = await api.post("sample", body);
  if (!current()) return;
  const xs = answer.x.map(flat), range = extent(xs);
  output.replaceChildren(
    element("div", { className: "tiles" }, ...xs.map((x, i) => figure(linePlot([x], { range }), `#${i}`))),
    numberTable(xs, xs.map((_, i) => `#${i}`), `the ${xs.length} draws' values`),
  );
  output.firstChild.dataset.request = JSON.stringify(body);
  return `${caption}; each plot is one draw's ${model.size} values against their index`;
}

// --- points and reconstructions ----------------------------------------------------------------------------------

// The stand-in for reference points: draws from the model itself (POST /sample, mode sample).
export async function drawModelPoints(api, state) {
  const n = Math.min(number("points-n"), MAX_POINTS);
  const answer = await api.post("sample", { model: state.model.ref, n, seed: number("points-seed"), mode: "sample" });
  return answer.x.map(flat);
}

// Points from the user's files: .npy arrays (one point or a batch) and images (one point each).
export async function readFiles(files, model, invert) {
  const points = [];
  for (const file of files) {
    if (file.name.toLowerCase().endsWith(".npy")) {
      points.push(...pointsOfArray(readNpy(await file.arrayBuffer()), model.size));
    } else if (file.type.startsWith("image/")) {
      if (!model.layout) throw new Error(`${file.name}: ${model.ref} has no image shape; drop a .npy of its values`);
      points.push(await pointOfImage(file, model.layout, invert));
    } else {
      throw new Error(`${file.name}: the page reads .npy files and images`);
    }
  }
  if (points.length === 0) throw new Error("no points in those files");
  return points.slice(0, MAX_POINTS);
}

export async function showPoints(api, state, output, current, actions) {
  const model = state.model;
  const encoded = await api.post("encode", { model: model.ref, x: state.points });
  if (!current()) return;
  state.latents = latentRows(model, encoded);
  const z = state.latents.map((row) => decodable(model, row));
  const body = { model: model.ref, z, seed: 0 };
  const figures = [];
  if (model.layout) {
    const scale = scaleFor(model.layout, 56);
    const tiles = await tilesOf(await api.picture("decode", body), z.length, model.layout, scale);
    if (!current()) return;
    state.points.forEach((x, i) => figures.push(figure([drawPoint(x, model.layout, scale), tiles[i]], `#${i}`, i)));
  } else {
    const decoded = await api.post("decode", body);
    if (!current()) return;
    const means = (decoded.x ?? decoded.mean).map(flat);
    state.points.forEach((x, i) => {
      const range = extent([x, means[i]]);
      figures.push(figure(linePlot([x, means[i]], { range, width: 120, height: 50 }), `#${i}`, i));
    });
  }
  for (const node of figures) node.addEventListener("click", () => actions.select(Number(node.dataset.index)));
  output.replaceChildren(element("div", { className: "tiles pairs" }, ...figures));
  actions.pointsChanged();
  const what = model.layout ? "top: the point; below: its reconstruction" : "grey: the point; blue: its reconstruction";
  return `${state.points.length} points; ${what}`;
}

export function markSelected(output, selected) {
  for (const node of output.querySelectorAll("figure[data-index]")) {
    node.classList.toggle("selected", Number(node.dataset.index) === selected);
  }
}

// --- interpolation -----------------------------------------------------------------------------------------------

export async function showInterpolation(api, state, output, current) {
  const model = state.model;
  const last = state.points.length - 1;
  const clamp = (id) => Math.min(Math.max(number(id), 0), last);
  const from = clamp("interp-from"), to = clamp("interp-to");
  const body = { model: model.ref, x: [state.points[from], state.points[to]], steps: number("interp-steps"),
                 path: value("interp-path") };
  const caption = `${body.steps} steps on a ${body.path} path between the encoder means of point #${from} and #${to}`;
  if (model.layout) {
    const tiles = await tilesOf(await api.picture("interpolate", body), body.steps, model.layout,
                                scaleFor(model.layout, 84));
    if (!current()) return;
    const strip = element("div", { className: "strip" },
      ...tiles.map((tile, i) => figure(tile, `t=${(i / (body.steps - 1)).toFixed(2)}`)));
    output.replaceChildren(strip);
    strip.dataset.request = JSON.stringify(body);
    return caption;
  }
  const answer = await api.post("interpolate", body);
  if (!current()) return;
  const xs = answer.x.map(flat), range = extent(xs);
  output.replaceChildren(
    element("div", { className: "tiles" },
      ...xs.map((x, i) => figure(linePlot([x], { range, width: 120 }), `t=${(i / (body.steps - 1)).toFixed(2)}`))),
    numberTable(xs, xs.map((_, i) => `t=${(i / (body.steps - 1)).toFixed(2)}`), "the decoded values along the path"),
  );
  return caption;
}

// --- the latent map ----------------------------------------------------------------------------------------------

const MAP_SIZE = 300, MARGIN = 14;

export async function showMap(api, state, output, current, actions) {
  const model = state.model, rows = state.latents;
  if (rows.length < 2) throw new Error("the map needs at least two points");
  const pca = principalComponents(rows);
  const projected = rows.map(pca.project);
  const [xLo, xHi] = extent([projected.map((p) => p[0])]), [yLo, yHi] = extent([projected.map((p) => p[1])]);
  const pad = 0.08, spanX = (xHi - xLo) * (1 + 2 * pad), spanY = (yHi - yLo) * (1 + 2 * pad);
  const toScreen = ([a, b]) => [MARGIN + ((a - xLo + pad * (xHi - xLo)) / spanX) * (MAP_SIZE - 2 * MARGIN),
                                MAP_SIZE - MARGIN - ((b - yLo + pad * (yHi - yLo)) / spanY) * (MAP_SIZE - 2 * MARGIN)];
  const toLatent = ([u, v]) => [xLo - pad * (xHi - xLo) + ((u - MARGIN) / (MAP_SIZE - 2 * MARGIN)) * spanX,
                                yLo - pad * (yHi - yLo) + ((MAP_SIZE - MARGIN - v) / (MAP_SIZE - 2 * MARGIN)) * spanY];
  const ratio = window.devicePixelRatio || 1;
  const canvas = element("canvas", { width: MAP_SIZE * ratio, height: MAP_SIZE * ratio, className: "map" });
  canvas.style.width = canvas.style.height = `${MAP_SIZE}px`;
  const decodedPanel = element("div", { className: "decoded" },
    element("p", { className: "note", textContent: "Click the map to decode a latent." }));
  let marker = null;

  function draw() {
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, MAP_SIZE, MAP_SIZE);
    context.strokeStyle = "#d0d4da";
    context.strokeRect(0.5, 0.5, MAP_SIZE - 1, MAP_SIZE - 1);
    projected.forEach((p, i) => {
      const [u, v] = toScreen(p);
      context.beginPath();
      context.arc(u, v, i === state.selected ? 6 : 4, 0, 2 * Math.PI);
      context.fillStyle = i === state.selected ? "#d9480f" : "rgba(28, 100, 180, 0.75)";
      context.fill();
    });
    if (marker) {
      const [u, v] = marker;
      context.strokeStyle = "#111";
      context.beginPath();
      context.moveTo(u - 7, v); context.lineTo(u + 7, v); context.moveTo(u, v - 7); context.lineTo(u, v + 7);
      context.stroke();
    }
  }

  let decodeGeneration = 0;
  async function decodeAt(latent, caption) {
    const generation = ++decodeGeneration;
    const body = { model: model.ref, z: [decodable(model, latent)], seed: 0 };
    decodedPanel.classList.add("busy");
    try {
      let content;
      if (model.layout) {
        [content] = await tilesOf(await api.picture("decode", body), 1, model.layout, scaleFor(model.layout, 128));
      } else {
        const answer = await api.post("decode", body);
        content = linePlot([flat((answer.x ?? answer.mean)[0])], { width: 150, height: 90 });
      }
      if (generation !== decodeGeneration) return;
      const use = element("button", { type: "button", textContent: "use as a point" });
      use.onclick = async () => {
        const answer = await api.post("decode", body);
        actions.addPoint(flat((answer.x ?? answer.mean)[0]));
      };
      decodedPanel.replaceChildren(figure(content, caption), use);
      decodedPanel.dataset.request = JSON.stringify(body);
    } catch (error) {
      decodedPanel.replaceChildren(element("p", { className: "problem", textContent: error.detail ?? error.message }));
    } finally {
      decodedPanel.classList.remove("busy");
    }
  }

  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const click = [event.clientX - box.left, event.clientY - box.top];
    let nearest = -1, best = 8;
    projected.forEach((p, i) => {
      const [u, v] = toScreen(p);
      const distance = Math.hypot(u - click[0], v - click[1]);
      if (distance < best) { best = distance; nearest = i; }
    });
    marker = nearest >= 0 ? null : click;
    if (nearest >= 0) {
      actions.select(nearest);
      decodeAt(rows[nearest], `point #${nearest}: its encoder mean, decoded`);
    } else {
      const [a, b] = toLatent(click);
      draw();
      decodeAt(pca.latentAt([a, b]), `PC1 ${fixed(a, 2)}, PC2 ${fixed(b, 2)}, decoded`);
    }
  });
  state.redrawMap = draw;
  if (!current()) return;
  draw();
  const axes = element("p", { className: "note",
    textContent: `→ PC1, ${(100 * pca.shares[0]).toFixed(0)} % of the variance; ↑ PC2, ` +
                 `${(100 * pca.shares[1]).toFixed(0)} %` });
  output.replaceChildren(element("div", { className: "side-by-side" }, element("div", {}, canvas, axes), decodedPanel));
  const space = model.categorical ? "the probabilities of q(z|x), every group's" : "the encoder means";
  return `${rows.length} points: ${space}, ${rows[0].length} numbers each`;
}

// --- anomaly -----------------------------------------------------------------------------------------------------

function scoreTable(answer) {
  const reference = answer.reference;
  const outlier = answer.is_outlier[0];
  const rows = [
    ["verdict", element("span", { className: outlier ? "badge outlier" : "badge inlier",
                                  textContent: `${outlier ? "" : "not "}an outlier at fpr ${answer.fpr}` })],
    ["p-value", fixed(answer.p_value[0], 4)],
    [`score (${reference.score})`, fixed(answer.score[0], 2)],
    ["threshold", fixed(answer.threshold, 2)],
    ["log p(x)", `${fixed(answer.loglik[0], 2)} ± ${fixed(answer.stderr[0], 2)} nats (${answer.method})`],
  ];
  if (answer.background_loglik) rows.push([`log p(x), ${reference.background}`, fixed(answer.background_loglik[0], 2)]);
  rows.push(["reference", `${reference.n} points, k = ${reference.k}: ${reference.data}`]);
  const table = element("table", { className: "score" });
  for (const [name, content] of rows) {
    const tr = table.insertRow();
    tr.append(element("th", { textContent: name }));
    tr.insertCell().append(content);
  }
  return table;
}

export async function showAnomaly(api, state, output, current) {
  const model = state.model;
  const index = Math.min(Math.max(state.selected, 0), state.points.length - 1);
  const point = state.points[index];
  const body = { model: model.ref, x: [point], fpr: number("anomaly-fpr"), features: true };
  const answer = await api.post("score", body);
  if (!current()) return;
  const features = flat(answer.feature_scores[0]);
  let pictures;
  if (model.layout) {
    const scale = scaleFor(model.layout, 160);
    const heat = drawHeatMap(features, model.layout, scale);
    const legend = element("div", { className: "legend" }, element("span", { textContent: fixed(heat.lo, 2) }),
                           heatLegend(), element("span", { textContent: `${fixed(heat.hi, 2)} nats` }));
    const overlay = drawHeatMap(features, model.layout, scale, point).canvas;
    pictures = element("div", {},
      element("div", { className: "tiles" }, figure(drawPoint(point, model.layout, scale), `point #${index}`),
              figure(heat.canvas, "per-pixel score"), figure(overlay, "over the point")),
      legend, element("p", { className: "note", textContent: "The per-pixel score is E over p(z | x) of " +
        "−log p(x_d | z) in nats: the parts of the point the model cannot explain." }));
  } else {
    pictures = element("div", {},
      figure(barPlot(features), "per-feature score, −log p(x_d | z), nats"),
      numberTable([features], ["nats"], "the per-feature scores"));
  }
  output.replaceChildren(element("div", { className: "side-by-side" }, scoreTable(answer), pictures));
  output.dataset.request = JSON.stringify(body);
  return `point #${index}, scored against ${model.ref}'s reference`;
}

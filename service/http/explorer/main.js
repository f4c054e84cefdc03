// The explorer: the model list, the key prompt, and the five views, each a few calls of the public API.

import { Api, ApiError } from "./api.js";
import { imageLayout, pointSize } from "./pictures.js";
import {
  drawModelPoints, markSelected, readFiles, showAnomaly, showInterpolation, showMap, showPoints, showSamples,
} from "./views.js";

const $ = (id) => document.getElementById(id);
const api = new Api(new URL(".", document.baseURI)); // the page is /explore: the API is beside it

// What every view reads: the model chosen, and the points the page holds (flat values, one array per point).
const state = { model: null, points: [], latents: [], selected: 0 };

function describeModel(version) {
  const manifest = version.manifest;
  const latent = manifest.latent?.type === "categorical"
    ? { categorical: true, groups: manifest.latent.groups, categories: manifest.latent.categories }
    : { categorical: false };
  return {
    ref: `${manifest.name}:${version.version}`, manifest, layout: imageLayout(manifest), size: pointSize(manifest),
    autoregressive: Boolean(manifest.likelihood?.autoregressive), reference: version.reference, ...latent,
  };
}

function modelSummary(model) {
  const m = model.manifest;
  const latent = model.categorical ? `${model.groups} × ${model.categories} categorical` : `${m.latent_dim} Gaussian`;
  const shown = model.layout
    ? `shown as ${model.layout.height}×${model.layout.width}${model.layout.channels === 3 ? " RGB" : ""} images`
    : "shown as numbers (no image shape in the manifest)";
  const reference = model.reference
    ? `reference: ${model.reference.n} points (${model.reference.score})` : "no reference";
  const parts = [`data_shape [${m.data_shape}]`, `latent ${latent}`, `${m.likelihood.type} likelihood`,
                 `prior ${m.prior?.type ?? "standard_normal"}`, shown, reference];
  return `${m.description ? m.description + " " : ""}${parts.join(" · ")}`;
}

// Each view shows one answer at a time: a newer request for it makes an older one's answer stale.
const generations = {};

async function runView(id, work) {
  const section = $(id), status = section.querySelector(".status"), output = section.querySelector(".output");
  const generation = (generations[id] = (generations[id] ?? 0) + 1);
  const current = () => generations[id] === generation;
  section.classList.add("busy");
  status.className = "status";
  status.textContent = "working…";
  try {
    const note = await work(output, current);
    if (current()) status.textContent = note ?? "";
  } catch (error) {
    if (!current()) return;
    output.replaceChildren();
    if (error instanceof ApiError) { // the service's refusal (a 409 without a reference, a 422): in its words
      status.className = "status refusal";
      status.textContent = `The service answered ${error.status}: ${error.detail}`;
    } else {
      status.className = "status problem";
      status.textContent = String(error.message ?? error);
    }
    if (error instanceof ApiError && error.status === 401) askForKey(error.detail);
  } finally {
    if (current()) {
      section.classList.remove("busy");
      section.dataset.ready = String(generation);
    }
  }
}

// What the views may ask of the page: choose a point, add one, and say that the points changed.
const actions = {
  select(index) {
    state.selected = index;
    $("anomaly-point").value = String(index);
    markSelected($("points").querySelector(".output"), index);
    state.redrawMap?.();
    refresh.anomaly();
  },
  addPoint(values) {
    state.points = [...state.points, values];
    state.selected = state.points.length - 1;
    refresh.shownPoints();
  },
  pointsChanged() {
    const last = String(state.points.length - 1);
    for (const id of ["interp-from", "interp-to", "anomaly-point"]) $(id).max = last;
    if (Number($("interp-to").value) > state.points.length - 1) $("interp-to").value = last;
    state.selected = Math.min(state.selected, state.points.length - 1);
    $("anomaly-point").value = String(state.selected);
    markSelected($("points").querySelector(".output"), state.selected);
    refresh.interpolation();
    refresh.map();
    refresh.anomaly();
  },
};

const refresh = {
  samples: () => runView("samples", (output, current) => showSamples(api, state, output, current)),
  points: () => runView("points", async (output, current) => {
    const points = await drawModelPoints(api, state);
    if (!current()) return;
    state.points = points;
    return showPoints(api, state, output, current, actions);
  }),
  userPoints: (files) => runView("points", async (output, current) => {
    const points = await readFiles(files, state.model, $("points-invert").checked);
    if (!current()) return;
    state.points = points;
    state.selected = 0;
    const note = await showPoints(api, state, output, current, actions);
    return note && `${note} (from ${files.map((file) => file.name).join(", ")})`;
  }),
  shownPoints: () => runView("points", (output, current) => showPoints(api, state, output, current, actions)),
  interpolation: () => runView("interpolation", (output, current) => showInterpolation(api, state, output, current)),
  map: () => runView("map", (output, current) => showMap(api, state, output, current, actions)),
  anomaly: () => runView("anomaly", (output, current) => showAnomaly(api, state, output, current)),
};

function chooseModel(model) {
  state.model = model;
  state.points = [];
  state.latents = [];
  state.selected = 0;
  history.replaceState(null, "", `#model=${encodeURIComponent(model.ref)}`);
  $("model-info").textContent = modelSummary(model);
  if (model.autoregressive) $("sample-mode").value = "sample"; // E[x given z] has no closed form for these
  refresh.samples();
  refresh.points();
}

async function loadModels() {
  const listing = await api.models();
  const models = [];
  for (const entry of listing.models) {
    for (const version of entry.versions) if (version.ready && version.manifest) models.push(describeModel(version));
  }
  if (models.length === 0) throw new Error("the service serves no model yet (GET /models lists none ready)");
  const select = $("model");
  select.replaceChildren(...models.map((model) => new Option(model.ref, model.ref)));
  $("model-picker").hidden = false;
  const wanted = new URLSearchParams(location.hash.slice(1)).get("model");
  const fallback = listing.models.find((entry) => entry.name === listing.default_model);
  const chosen = models.find((model) => model.ref === wanted || model.ref.split(":")[0] === wanted)
    ?? models.find((model) => fallback && model.ref === `${fallback.name}:${fallback.default_version}`) ?? models[0];
  select.value = chosen.ref;
  select.onchange = () => chooseModel(models.find((model) => model.ref === select.value));
  $("key-form").hidden = true;
  $("key-state").hidden = !api.key;
  $("views").hidden = false;
  chooseModel(chosen);
}

function askForKey(problem) {
  $("views").hidden = true;
  $("model-picker").hidden = true;
  $("key-state").hidden = true;
  $("key-form").hidden = false;
  const error = $("key-error");
  error.hidden = !(problem && api.key);
  if (api.key) error.textContent = `The service refused that key: ${problem}`;
  api.setKey(null);
  $("key").focus();
}

async function start() {
  try {
    await loadModels();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return askForKey(error.detail);
    $("page-error").hidden = false;
    $("page-error").textContent = `Could not list the models: ${error.message}`;
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault(); // the key goes in a header, never in the page's address
  api.setKey($("key").value.trim());
  $("key").value = "";
  start();
});
$("forget-key").addEventListener("click", () => {
  api.setKey(null);
  askForKey();
});
$("sample-new-seed").addEventListener("click", () => {
  $("sample-seed").value = String(Math.floor(Math.random() * 1e6));
  refresh.samples();
});
for (const id of ["sample-n", "sample-temperature", "sample-seed", "sample-mode"]) {
  $(id).addEventListener("change", refresh.samples);
}
for (const id of ["points-n", "points-seed"]) $(id).addEventListener("change", refresh.points);
$("points-draw").addEventListener("click", refresh.points);
$("points-file").addEventListener("change", (event) => {
  const files = [...event.target.files];
  event.target.value = ""; // so that choosing the same file again is a change too
  if (files.length) refresh.userPoints(files);
});
const dropZone = $("points");
dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dropping"); });
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dropping");
  if (event.dataTransfer.files.length) refresh.userPoints([...event.dataTransfer.files]);
});
for (const id of ["interp-from", "interp-to", "interp-steps", "interp-path"]) {
  $(id).addEventListener("change", refresh.interpolation);
}
$("anomaly-point").addEventListener("change", () => actions.select(Number($("anomaly-point").value)));
$("anomaly-fpr").addEventListener("change", refresh.anomaly);

start();

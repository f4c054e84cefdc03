// Points as pictures (CONTRACT section 4): the manifest's image layout, the contract's pixel formula for points the
// page holds as numbers, tiles cut out of the service's PNG grids, and heat maps of per-feature scores.

const product = (shape) => shape.reduce((a, b) => a * b, 1);

// The image a manifest shows its points as: its "image" key, or the one data_shape [H, W], [1, H, W], [3, H, W]
// implies; null when neither (the page then shows numbers).
export function imageLayout(manifest) {
  const shape = manifest.data_shape;
  const given = manifest.image;
  if (given) {
    const [lo, hi] = given.range ?? [0, 1];
    return { height: given.height, width: given.width, channels: given.channels ?? 1, lo, hi };
  }
  if (shape.length === 2) return { height: shape[0], width: shape[1], channels: 1, lo: 0, hi: 1 };
  if (shape.length === 3 && (shape[0] === 1 || shape[0] === 3)) {
    return { height: shape[1], width: shape[2], channels: shape[0], lo: 0, hi: 1 };
  }
  return null;
}

export const pointSize = (manifest) => product(manifest.data_shape);

// Nearest integer, halves to even: NumPy's rint, which the service's PNGs use.
function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// The contract's pixel: round(255 (clip(v, lo, hi) - lo) / (hi - lo)), on the float32 value the service holds.
export function pixel(value, layout) {
  const v = Math.min(Math.max(Math.fround(value), layout.lo), layout.hi);
  return roundHalfEven((255 * (v - layout.lo)) / (layout.hi - layout.lo));
}

function canvasOf(width, height, scale, className = "picture") {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${width * scale}px`;
  canvas.style.height = `${height * scale}px`;
  canvas.className = className;
  return canvas;
}

// The display scale that makes a picture about `target` CSS pixels on its longer side.
export const scaleFor = (layout, target) => Math.max(1, Math.floor(target / Math.max(layout.height, layout.width)));

// One point (flat values, C order of channels, height, width) as a canvas of its own pixels, shown `scale` times.
export function drawPoint(values, layout, scale) {
  const { height, width, channels } = layout;
  const canvas = canvasOf(width, height, scale);
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const plane = height * width;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = pixel(values[(channels === 3 ? c : 0) * plane + i], layout);
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

// The n pictures of one of the service's PNG grids (ceil(sqrt(n)) columns, row by row, no borders), each cut out
// into a canvas of its own, pixel for pixel.
export async function tilesOf(blob, n, layout, scale) {
  const bitmap = await createImageBitmap(blob);
  const columns = Math.ceil(Math.sqrt(n));
  const tiles = [];
  for (let i = 0; i < n; i++) {
    const canvas = canvasOf(layout.width, layout.height, scale);
    const x = (i % columns) * layout.width, y = Math.floor(i / columns) * layout.height;
    canvas.getContext("2d").drawImage(bitmap, x, y, layout.width, layout.height, 0, 0, layout.width, layout.height);
    tiles.push(canvas);
  }
  bitmap.close();
  return tiles;
}

// A perceptual colour scale (dark purple, red, yellow), `t` in [0, 1].
const STOPS = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
export function heatColour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  return STOPS[i].map((a, c) => Math.round(a + f * (STOPS[i + 1][c] - a)));
}

// Per-feature scores (flat, as the point's values) as a heat map: channels summed per pixel, coloured from the
// lowest to the highest; with `values` (the point), laid over the point's own picture (dimmed grey, the colour's
// weight growing with the score). Returns the canvas and the [min, max] its colours span.
export function drawHeatMap(scores, layout, scale, values = null) {
  const { height, width, channels } = layout;
  const plane = height * width;
  const perPixel = new Float64Array(plane);
  for (let c = 0; c < channels; c++) for (let i = 0; i < plane; i++) perPixel[i] += scores[c * plane + i];
  let lo = Infinity, hi = -Infinity;
  for (const v of perPixel) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const canvas = canvasOf(width, height, scale);
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < plane; i++) {
    const t = hi > lo ? (perPixel[i] - lo) / (hi - lo) : 0;
    let colour = heatColour(t);
    if (values) {
      let grey = 0;
      for (let c = 0; c < channels; c++) grey += pixel(values[c * plane + i], layout) / channels;
      const weight = Math.sqrt(t);
      colour = colour.map((v) => Math.round(weight * v + (1 - weight) * 0.55 * grey));
    }
    image.data.set([...colour, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
  return { canvas, lo, hi };
}

// The colour scale as a bar, for a legend.
export function heatLegend(widthPx = 160) {
  const canvas = canvasOf(widthPx, 1, 1, "legend");
  canvas.style.height = "10px";
  const context = canvas.getContext("2d");
  for (let x = 0; x < widthPx; x++) {
    context.fillStyle = `rgb(${heatColour(x / (widthPx - 1)).join(",")})`;
    context.fillRect(x, 0, 1, 1);
  }
  return canvas;
}

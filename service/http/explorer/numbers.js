// The page's own arithmetic: .npy files read into points, images read into points, and a two-component PCA.

const DTYPES = {
  f4: Float32Array, f8: Float64Array, i1: Int8Array, i2: Int16Array, i4: Int32Array, i8: BigInt64Array,
  u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, u8: BigUint64Array, b1: Uint8Array,
};

// The bytes of numpy.save -> { shape, values } (C order, numbers). Little-endian, not Fortran order.
export function readNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.slice(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("not a .npy file (numpy.save writes one)");
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLength));
  const descr = /'descr':\s*'([<>|=])([a-z]\d+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText) throw new Error("the .npy header could not be read");
  const Type = DTYPES[descr[2]];
  if (!Type) throw new Error(`.npy dtype ${descr[2]}: the page reads float, int, uint and bool arrays`);
  if (descr[1] === ">") throw new Error(".npy: big-endian arrays are not read here; save it little-endian");
  if (fortran[1] === "True") throw new Error(".npy: Fortran order; save it with np.ascontiguousarray");
  const shape = shapeText[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  const raw = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  return { shape, values: Array.from(raw, Number) };
}

// An array's values as points of `size` values each: one point of that many values, or a batch of them.
export function pointsOfArray({ shape, values }, size) {
  if (values.length === 0 || values.length % size !== 0) {
    throw new Error(`an array of shape [${shape}] is not points of ${size} values each`);
  }
  const points = [];
  for (let i = 0; i < values.length; i += size) points.push(values.slice(i, i + size));
  return points;
}

// An image file as one point of the model's layout: resized to its height x width, grey (or RGB for 3 channels),
// its 0..255 levels mapped onto the layout's [lo, hi]; inverted when asked (dark strokes on a light background).
export async function pointOfImage(file, layout, invert) {
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(layout.width, layout.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, layout.width, layout.height);
  bitmap.close();
  const data = context.getImageData(0, 0, layout.width, layout.height).data;
  const plane = layout.width * layout.height;
  const values = new Array(plane * layout.channels);
  for (let i = 0; i < plane; i++) {
    const rgb = [data[4 * i], data[4 * i + 1], data[4 * i + 2]];
    const levels = layout.channels === 3 ? rgb : [0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]];
    levels.forEach((level, c) => {
      const t = (invert ? 255 - level : level) / 255;
      values[c * plane + i] = layout.lo + t * (layout.hi - layout.lo);
    });
  }
  return values;
}

// The mean and the first two principal directions of the rows of `rows` (N x D), with the share of the variance
// each explains: the covariance's eigenvectors by power iteration, the second after deflating the first.
export function principalComponents(rows) {
  const n = rows.length, d = rows[0].length;
  const mean = new Array(d).fill(0);
  for (const row of rows) row.forEach((v, j) => { mean[j] += v / n; });
  const covariance = Array.from({ length: d }, () => new Array(d).fill(0));
  for (const row of rows) {
    const centred = row.map((v, j) => v - mean[j]);
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) covariance[a][b] += (centred[a] * centred[b]) / n;
  }
  const total = covariance.reduce((sum, row, j) => sum + row[j], 0);
  const directions = [], shares = [];
  for (let component = 0; component < Math.min(2, d); component++) {
    let v = Array.from({ length: d }, (_, j) => 1 / Math.sqrt(d + j)); // a fixed start: the same map every time
    let eigenvalue = 0;
    for (let iteration = 0; iteration < 500; iteration++) {
      const next = covariance.map((row) => row.reduce((s, c, j) => s + c * v[j], 0));
      const norm = Math.hypot(...next);
      if (norm === 0) break;
      const moved = next.reduce((s, x, j) => s + Math.abs(x / norm - v[j]), 0);
      v = next.map((x) => x / norm);
      eigenvalue = norm;
      if (moved < 1e-10) break;
    }
    const sign = v.reduce((best, x) => (Math.abs(x) > Math.abs(best) ? x : best), 0) < 0 ? -1 : 1;
    v = v.map((x) => sign * x);
    directions.push(v);
    shares.push(total > 0 ? eigenvalue / total : 0);
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) covariance[a][b] -= eigenvalue * v[a] * v[b];
  }
  if (directions.length === 1) { directions.push(new Array(d).fill(0)); shares.push(0); }
  const project = (row) => directions.map((v) => row.reduce((s, x, j) => s + (x - mean[j]) * v[j], 0));
  const latentAt = ([a, b]) => mean.map((m, j) => m + a * directions[0][j] + b * directions[1][j]);
  return { mean, directions, shares, project, latentAt };
}

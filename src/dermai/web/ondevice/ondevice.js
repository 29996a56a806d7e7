// On-device DermAI: runs the exported LiteRT (.tflite) model in the browser with LiteRT.js.
// The photo never leaves the device. Everything the model needs (classes, input size, resize
// rule, temperature, out-of-distribution guard) is read from the `dermai` metadata embedded in
// the .tflite itself, the same document `dermai.runtime.tflite.read_metadata` reads in Python,
// so the two cannot drift.
// The resize reproduces Pillow's bicubic resample (dermai.core.preprocess.fit) in integer
// arithmetic, so a photo gives the browser the same pixels it gives `dermai predict`; a model
// trained with colour constancy (metadata input.colour_constancy) gets the same Shades-of-Grey
// correction of those pixels (dermai.core.preprocess.shades_of_grey, float64 as numpy).
// Not a medical diagnosis: an educational/research prototype.
import {encodeMetadata} from './metadata.js';
import {loadLiteRt, loadAndCompile, Tensor} from './litert/core/index.js';

export const METADATA_NAME = 'dermai';

// ------------------------------------------------------------------ embedded metadata

/** The JSON document stored under `name` in the model flatbuffer's metadata table (or null). */
export function readMetadata(bytes, name = METADATA_NAME) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ident = String.fromCharCode(...bytes.subarray(4, 8));
  if (ident !== 'TFL3') throw new Error('not a LiteRT/TFLite model (no TFL3 identifier)');
  const u32 = (p) => view.getUint32(p, true);
  const field = (table, i) => {  // absolute position of field i of a table, or 0 when absent
    const vt = table - view.getInt32(table, true);
    if (4 + 2 * i >= view.getUint16(vt, true)) return 0;
    const off = view.getUint16(vt + 4 + 2 * i, true);
    return off ? table + off : 0;
  };
  const ref = (p) => p + u32(p);
  const vector = (table, i) => {
    const p = field(table, i);
    if (!p) return [0, 0];
    const v = ref(p);
    return [v + 4, u32(v)];
  };
  const string = (table, i) => {
    const [start, n] = vector(table, i);
    return new TextDecoder().decode(bytes.subarray(start, start + n));
  };
  const root = u32(0);
  const [metaStart, metaCount] = vector(root, 6);  // Model.metadata
  const [bufStart, bufCount] = vector(root, 4);    // Model.buffers
  for (let i = 0; i < metaCount; i++) {
    const entry = ref(metaStart + 4 * i);
    if (string(entry, 0) !== name) continue;       // Metadata.name
    const bp = field(entry, 1);                    // Metadata.buffer
    const index = bp ? u32(bp) : 0;
    if (index >= bufCount) throw new Error(`metadata ${name} points past the buffers`);
    const buffer = ref(bufStart + 4 * index);
    let data;
    const offp = field(buffer, 1);                 // Buffer.offset (large models)
    const offset = offp ? Number(view.getBigUint64(offp, true)) : 0;
    if (offset > 1) {
      const size = Number(view.getBigUint64(field(buffer, 2), true));
      data = bytes.subarray(offset, offset + size);
    } else {
      const [start, n] = vector(buffer, 0);        // Buffer.data
      data = bytes.subarray(start, start + n);
    }
    return JSON.parse(new TextDecoder().decode(data));
  }
  return null;
}

// ------------------------------------------------------------------ Pillow-exact resize

const PRECISION_BITS = 32 - 8 - 2;  // Pillow's Resample.c

function bicubic(x) {  // Pillow's bicubic filter, a = -0.5, support 2
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function coefficients(inSize, in0, in1, outSize) {
  in0 = Math.fround(in0);  // Pillow passes the resize box to C as float32
  in1 = Math.fround(in1);
  const scale = (in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < xmax && ww !== 0 ? k[x] / ww : 0;
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS)
                                            : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return {bounds, kk, ksize};
}

function clip8(v) {
  v = Math.floor(v / (1 << PRECISION_BITS));  // >> PRECISION_BITS on a possibly > 2^31 sum
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// RGB images are {data: Uint8Array (h*w*3), width, height}.
function resampleH(img, outW, in0, in1) {
  const {bounds, kk, ksize} = coefficients(img.width, in0, in1, outW);
  const out = new Uint8Array(outW * img.height * 3);
  for (let y = 0; y < img.height; y++) {
    const row = y * img.width * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
      for (let c = 0; c < 3; c++) {
        let s = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) s += img.data[row + (x + xmin) * 3 + c] * kk[k + x];
        out[(y * outW + xx) * 3 + c] = clip8(s);
      }
    }
  }
  return {data: out, width: outW, height: img.height};
}

function resampleV(img, outH, in0, in1) {
  const {bounds, kk, ksize} = coefficients(img.height, in0, in1, outH);
  const w3 = img.width * 3;
  const out = new Uint8Array(outH * w3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k = yy * ksize;
    for (let i = 0; i < w3; i++) {
      let s = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < ymax; y++) s += img.data[(y + ymin) * w3 + i] * kk[k + y];
      out[yy * w3 + i] = clip8(s);
    }
  }
  return {data: out, width: img.width, height: outH};
}

// Pillow's Image.reduce (box average per block, its fixed-point rounding, partial last blocks).
function reduce(img, fx, fy) {
  const outW = Math.ceil(img.width / fx), outH = Math.ceil(img.height / fy);
  const out = new Uint8Array(outW * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const y0 = yy * fy, y1 = Math.min(y0 + fy, img.height);
    for (let xx = 0; xx < outW; xx++) {
      const x0 = xx * fx, x1 = Math.min(x0 + fx, img.width);
      const n = (y1 - y0) * (x1 - x0);
      const multiplier = Math.floor(2 ** 24 / n), amend = Math.floor(n / 2);
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let y = y0; y < y1; y++) {
          for (let x = x0; x < x1; x++) s += img.data[(y * img.width + x) * 3 + c];
        }
        out[(yy * outW + xx) * 3 + c] = Math.floor(((s + amend) * multiplier) / 2 ** 24);
      }
    }
  }
  return {data: out, width: outW, height: outH};
}

/** Pillow's img.resize((w, h), BICUBIC, reducing_gap=3.0) for an RGB image. */
export function resizeBicubic(img, width, height, reducingGap = 3.0) {
  let box = [0, 0, img.width, img.height];
  const fx = Math.trunc(img.width / width / reducingGap) || 1;
  const fy = Math.trunc(img.height / height / reducingGap) || 1;
  if (fx > 1 || fy > 1) {  // the safe box is the whole image when the box is the whole image
    img = reduce(img, fx, fy);
    box = [0, 0, box[2] / fx, box[3] / fy];
  }
  if (width !== img.width || box[0] !== 0 || box[2] !== width) {
    img = resampleH(img, width, box[0], box[2]);
  }
  if (height !== img.height || box[1] !== 0 || box[3] !== height) {
    img = resampleV(img, height, box[1], box[3]);
  }
  return img;
}

/** dermai.core.preprocess.fit: scale to cover height x width keeping aspect, centre-crop. */
export function fit(img, height, width) {
  if (img.width === width && img.height === height) return img;
  const scale = Math.max(width / img.width, height / img.height);
  const pyRound = (v) => {  // Python's round(): halves go to the even neighbour
    const f = Math.floor(v), d = v - f;
    return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  };
  const newW = Math.max(width, pyRound(img.width * scale));
  const newH = Math.max(height, pyRound(img.height * scale));
  const r = resizeBicubic(img, newW, newH);
  const left = Math.floor((newW - width) / 2), top = Math.floor((newH - height) / 2);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const src = ((y + top) * newW + left) * 3;
    out.set(r.data.subarray(src, src + width * 3), y * width * 3);
  }
  return {data: out, width, height};
}

/** The Shades-of-Grey p a model's metadata asks for (input.colour_constancy), or null. */
export function colourConstancy(meta) {
  const cc = meta.input && meta.input.colour_constancy;
  if (cc === undefined || cc === null) return null;
  if (cc.method !== 'shades_of_grey' || !(cc.p >= 1)) {
    throw new Error(`unknown colour_constancy in the model metadata: ${JSON.stringify(cc)}`);
  }
  return cc.p;
}

/**
 * dermai.core.preprocess.shades_of_grey: each channel's illuminant is its Minkowski p-mean
 * (max * mean((x / max)^p)^(1/p); the max for p = Infinity), each channel is scaled by
 * ||e|| / (sqrt(3) e_c), rounded half up and clipped to [0, 255]. Same float64 arithmetic as
 * numpy, so the two agree to the grey level.
 */
export function shadesOfGrey(img, p) {
  const n = img.width * img.height, d = img.data;
  const e = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let m = 0;
    for (let i = 0; i < n; i++) m = Math.max(m, d[i * 3 + c]);
    if (p === Infinity || m === 0) {
      e[c] = m;
      continue;
    }
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.pow(d[i * 3 + c] / m, p);
    e[c] = m * Math.pow(s / n, 1 / p);
  }
  const norm = Math.sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
  const gains = e.map((v) => (v > 0 ? norm / (Math.sqrt(3) * v) : 1));
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n * 3; i++) {
    out[i] = Math.min(255, Math.max(0, Math.floor(d[i] * gains[i % 3] + 0.5)));
  }
  return {data: out, width: img.width, height: img.height};
}

/** RGBA ImageData-like {data, width, height} -> RGB image (alpha dropped, as Pillow's convert). */
export function rgbFromRgba(rgba) {
  const n = rgba.width * rgba.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = rgba.data[i * 4];
    out[i * 3 + 1] = rgba.data[i * 4 + 1];
    out[i * 3 + 2] = rgba.data[i * 4 + 2];
  }
  return {data: out, width: rgba.width, height: rgba.height};
}

/** Decode a File/Blob with EXIF orientation applied and no colour management, as Pillow does. */
export async function decodeImage(blob) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(bitmap, 0, 0);
    return rgbFromRgba(ctx.getImageData(0, 0, bitmap.width, bitmap.height));
  } finally {
    bitmap.close();
  }
}

// ------------------------------------------------------------------ the model

export function softmax(logits, temperature = 1) {
  const z = Array.from(logits, (v) => v / temperature);
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

// ------------------------------------------------------------------ out-of-distribution guard
// The rule `dermai evaluate` fitted (dermai.core.ood), read from the metadata's `ood` entry, the
// same document `dermai.runtime.bundle.guard_of` reads. The arithmetic mirrors core/ood.py
// step by step in float64 (the logits are the model's float32 outputs, as in Python).

/** core.ood.logsumexp for one row: m + log(sum(exp(z - m))). */
export function logSumExp(z) {
  const m = Math.max(...z);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** Why this page cannot apply `guard` (null when it can): it sees the model's outputs, the
 * logits and, when `roles` (the metadata's `outputs`) lists it, the pooled frozen trunk. */
export function guardProblem(guard, roles = ['logits']) {
  if (!guard) return 'the model carries no out-of-distribution guard';
  if (!['energy', 'max_softmax', 'mahalanobis', 'ppca'].includes(guard.method)) {
    return `its out-of-distribution guard (${guard.method}) is not known to this page`;
  }
  if (guard.space === 'features' && guard.method !== 'energy' && guard.method !== 'max_softmax') {
    return 'its out-of-distribution guard (a density on the network\'s internal ' +
      'features) needs values the on-device model does not output';
  }
  if (guard.space === 'trunk' && !roles.includes('trunk')) {
    return 'its out-of-distribution guard scores the frozen trunk, which this model file ' +
      'does not output (export it again)';
  }
  return null;
}

/** core.ood.Ppca.score for one row x: the PPCA log-likelihood, without a D x D matrix. */
export function ppcaScore(ppca, x) {
  const {mean, components, variances} = ppca;
  const noise = ppca.noise_variance;
  const xc = Array.from(mean, (m, j) => x[j] - m);
  const r = xc.slice();  // the residual off the components (as core.ood: no |xc|^2 - |z|^2)
  let inside = 0;
  for (let i = 0; i < components.length; i++) {
    let z = 0;
    for (let j = 0; j < xc.length; j++) z += xc[j] * components[i][j];
    inside += z * z / variances[i];
    for (let j = 0; j < xc.length; j++) r[j] -= z * components[i][j];
  }
  let total = 0;
  for (const v of r) total += v * v;
  const off = total / noise;
  const d = mean.length;
  const k = variances.length;
  let logdet = (d - k) * Math.log(noise);
  for (const v of variances) logdet += Math.log(v);
  return -0.5 * (inside + off + logdet + d * Math.log(2 * Math.PI));
}

/** core.ood.Guard.score for one image's logits (and pooled trunk, for a trunk guard); higher =
 * more like the training data. */
export function oodScore(guard, logits, trunk = null) {
  const t = guard.temperature ?? 1;
  if (guard.method === 'energy') {  // T * logsumexp(logits / T)
    return t * logSumExp(Array.from(logits, (v) => v / t));
  }
  if (guard.method === 'max_softmax') {  // exp(max(z) - logsumexp(z)), z = logits / T
    const z = Array.from(logits, (v) => v / t);
    return Math.exp(Math.max(...z) - logSumExp(z));
  }
  const x = guard.space === 'logits' ? logits : (guard.space === 'trunk' ? trunk : null);
  if (x && guard.method === 'ppca') return ppcaScore(guard.ppca, x);
  if (x && guard.method === 'mahalanobis') {
    // -min_c (p - mu_c)' P (p - mu_c), p = (x - center) @ components.T
    const {center, components, means, precision} = guard.mahalanobis;
    const p = components.map((row) => row.reduce((a, w, j) => a + (x[j] - center[j]) * w, 0));
    let best = Infinity;
    for (const mu of means) {
      const d = p.map((v, k) => v - mu[k]);
      let dist = 0;
      for (let k = 0; k < d.length; k++) {
        let row = 0;
        for (let l = 0; l < d.length; l++) row += precision[k][l] * d[l];
        dist += d[k] * row;
      }
      best = Math.min(best, dist);
    }
    return -best;
  }
  throw new Error(guardProblem(guard) || `unknown OOD method ${guard.method}`);
}

/** {score, threshold, inDistribution, method} under the model's guard (accept: score >= t). */
export function checkGuard(guard, logits, trunk = null) {
  const score = oodScore(guard, logits, trunk);
  return {score, threshold: guard.threshold, inDistribution: score >= guard.threshold,
          method: guard.method};
}

let runtime = null;

/** Load the LiteRT.js WASM runtime (once per page) from `wasmDir` (a URL ending in /). */
export function loadRuntime(wasmDir) {
  runtime = runtime || loadLiteRt(wasmDir);
  return runtime;
}

export class OnDeviceModel {
  /** Fetch, read the metadata of, and compile the .tflite at `modelUrl` (CPU/WASM). */
  static async load(modelUrl, wasmDir) {
    await loadRuntime(wasmDir);
    const response = await fetch(modelUrl);
    if (!response.ok) throw new Error(`model download failed: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const meta = readMetadata(bytes);
    if (!meta) throw new Error(`the model has no '${METADATA_NAME}' metadata (classes, input size)`);
    const compiled = await loadAndCompile(bytes, {accelerator: 'wasm'});
    const model = new OnDeviceModel(compiled, meta);
    // The first run packs the weights for the CPU kernels (seconds on a slow phone): pay it
    // while the user is still choosing a photo, not after.
    const t0 = performance.now();
    await model.logits({data: new Uint8Array(model.height * model.width * 3),
                        width: model.width, height: model.height});  // metadata: unknown
    model.warmupMs = performance.now() - t0;
    return model;
  }

  constructor(compiled, meta) {
    this.compiled = compiled;
    this.meta = meta;
    this.classes = meta.classes;
    this.height = meta.input.height;
    this.width = meta.input.width;
    this.temperature = meta.temperature ?? 1;
    this.colourP = colourConstancy(meta);  // null: the model was trained without it
    // Each output's role in order (dermai.runtime.tflite.OUTPUT_ROLES): the logits, and the
    // pooled frozen trunk when the guard scores it. One output: the logits.
    this.roles = meta.outputs ?? ['logits'];
    this.guard = meta.ood ?? null;
    this.guardProblem = guardProblem(this.guard, this.roles);  // null: the page applies it
    // A model trained with patient metadata (`model.metadata`) takes its encoded vector as a
    // second input (metadata.js: the rules of dermai.core.metadata); null: the image alone.
    this.metadataDoc = meta.metadata ?? null;
    const inputs = compiled.getInputDetails();
    this.imageInput = inputs.findIndex((d) => d.shape.length === 4);
    const inp = inputs[this.imageInput];
    const outs = compiled.getOutputDetails();
    const shape = Array.from(inp.shape);
    if (inputs.length !== (this.metadataDoc ? 2 : 1) || this.imageInput < 0) {
      throw new Error(`the model has ${inputs.length} inputs, its metadata expects ` +
                      `${this.metadataDoc ? 'an image and a metadata vector' : 'one image'}`);
    }
    if (this.metadataDoc) {
      const m = inputs[1 - this.imageInput];
      if (m.dtype !== 'float32' || m.shape[m.shape.length - 1] !== this.metadataDoc.width) {
        throw new Error(`metadata input ${Array.from(m.shape)} does not match width ${this.metadataDoc.width}`);
      }
    }
    if (inp.dtype !== 'float32' || outs.some((o) => o.dtype !== 'float32')) {
      throw new Error('the browser model must have float32 input and output (export-web wraps int8)');
    }
    if (shape.join() !== [1, this.height, this.width, 3].join()) {
      throw new Error(`input tensor ${shape} does not match the metadata ${this.height}x${this.width}`);
    }
    if (outs.length !== this.roles.length) {
      throw new Error(`the model has ${outs.length} outputs, its metadata names ${this.roles}`);
    }
    const out = outs[this.roles.indexOf('logits')];
    if (out.shape[out.shape.length - 1] !== this.classes.length) {
      throw new Error('output size does not match the classes in the metadata');
    }
  }

  /** {logits, trunk} for one fitted RGB image ({data: Uint8Array h*w*3}); raw [0, 255]
   * floats in; trunk is null when the model has no trunk output. `answers`: the patient
   * metadata ({field: value}, any subset; the rest unknown) of a model that takes it. */
  async run(img, answers = {}) {
    if (img.width !== this.width || img.height !== this.height) {
      throw new Error(`expected ${this.width}x${this.height}, got ${img.width}x${img.height}`);
    }
    const input = new Tensor(Float32Array.from(img.data), [1, this.height, this.width, 3]);
    const tensors = [input];
    if (this.metadataDoc) {
      const m = new Tensor(encodeMetadata(this.metadataDoc, answers), [1, this.metadataDoc.width]);
      tensors.splice(1 - this.imageInput, 0, m);  // in the model's input order
    }
    try {
      const outputs = await this.compiled.run(tensors.length === 1 ? input : tensors);
      try {
        const get = (role) => (this.roles.includes(role) ?
          Array.from(outputs[this.roles.indexOf(role)].toTypedArray()) : null);
        return {logits: get('logits'), trunk: get('trunk')};
      } finally {
        for (const t of outputs) t.delete();
      }
    } finally {
      for (const t of tensors) t.delete();
    }
  }

  /** Logits for one fitted RGB image ({data: Uint8Array h*w*3}); raw [0, 255] floats in. */
  async logits(img, answers = {}) {
    return (await this.run(img, answers)).logits;
  }

  /** What the model sees of an RGB image: fit() to the input size, then the colour constancy
   * it was trained with (dermai.core.preprocess.prepare). */
  prepare(img) {
    const fitted = fit(img, this.height, this.width);
    return this.colourP === null ? fitted : shadesOfGrey(fitted, this.colourP);
  }

  /** Calibrated probabilities for any RGB image: prepare() it, run, softmax(z / T).
   * `answers`: the patient metadata of a model that takes it (any subset; the rest unknown). */
  async predict(img, answers = {}) {
    const t0 = performance.now();
    const fitted = this.prepare(img);
    const t1 = performance.now();
    const {logits, trunk} = await this.run(fitted, answers);
    const t2 = performance.now();
    const probabilities = softmax(logits, this.temperature);
    // null when the page cannot apply a guard (none, or one on internal features)
    const ood = this.guardProblem ? null : checkGuard(this.guard, logits, trunk);
    return {logits, trunk, probabilities, ood, preprocessMs: t1 - t0, inferenceMs: t2 - t1};
  }
}

// The static on-device page: pick or take a photo, predict in the browser, show the top 3.
// Not a medical diagnosis. Registers the service worker that makes the site work offline.
import {OnDeviceModel, decodeImage, fit, loadRuntime} from './ondevice.js';

const $ = (id) => document.getElementById(id);
const TOP = 3;
const NAMES = {
  akiec: 'Actinic keratosis / intraepithelial carcinoma', bcc: 'Basal cell carcinoma',
  bkl: 'Benign keratosis-like lesion', df: 'Dermatofibroma', mel: 'Melanoma',
  nv: 'Melanocytic nevus', vasc: 'Vascular lesion',
};

function show(id, on) { $(id).hidden = !on; }

function percent(p) {
  if (p < 0.001) return '<0.1%';
  if (p > 0.999) return '>99.9%';
  return `${(p * 100).toFixed(1)}%`;
}

function render(model, fitted, result) {
  const canvas = $('preview');
  canvas.width = fitted.width;
  canvas.height = fitted.height;
  const rgba = new ImageData(fitted.width, fitted.height);
  for (let i = 0; i < fitted.width * fitted.height; i++) {
    rgba.data.set(fitted.data.subarray(i * 3, i * 3 + 3), i * 4);
    rgba.data[i * 4 + 3] = 255;
  }
  canvas.getContext('2d').putImageData(rgba, 0, 0);
  $('timing').textContent = `Computed on this device in ${result.inferenceMs.toFixed(0)} ms ` +
    `(resize ${result.preprocessMs.toFixed(0)} ms); nothing was uploaded.`;
  // The out-of-distribution guard tripped: say so (the text embedded in the model, the one
  // `dermai predict` and the server page show) and show no probabilities.
  const refused = Boolean(result.ood && !result.ood.inDistribution);
  $('ood').textContent = refused ? model.guard.message : '';
  show('ood', refused);
  show('answers-title', !refused);
  show('predictions', !refused);
  $('predictions').replaceChildren();
  if (refused) return;
  const order = result.probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  const list = $('predictions');
  list.replaceChildren();
  for (const [p, i] of order.slice(0, TOP)) {
    const li = document.createElement('li');
    li.className = 'prediction';
    const code = model.classes[i];
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = NAMES[code] ? `${NAMES[code]} (${code})` : code;
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = percent(p);
    const bar = document.createElement('span');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bar.append(fill);
    li.append(name, value, bar);
    list.append(li);
  }
}

const GUARD_NAMES = {ppca: 'image-feature density (PPCA)', max_softmax: 'max softmax',
                     energy: 'energy', mahalanobis: 'Mahalanobis'};

/** What the page says about its out-of-distribution guard (and never claims one it lacks). */
function describeGuard(model) {
  const el = $('guard-info');
  if (model.guardProblem) {
    el.textContent = `This page does not check whether a photo looks like the training ` +
      `images: ${model.guardProblem}. It answers on anything, so judge the photo yourself.`;
    el.className = 'notice small';
  } else {
    const g = model.guard;
    const kept = g.keep ? `, which keeps ${(g.keep * 100).toFixed(0)}% of validation images` : '';
    el.textContent = `Photos that do not look like ${g.image_kind || 'the training images'} ` +
      `get no answer (out-of-distribution guard: ${GUARD_NAMES[g.method] || g.method} score, ` +
      `threshold ${Number(g.threshold).toFixed(3)}${kept}).`;
    el.className = 'hint';
  }
  el.dataset.guard = model.guardProblem ? 'none' : model.guard.method;
  show('guard-info', true);
}

async function main() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js').catch((e) => console.warn('offline cache:', e));
  }
  const t0 = performance.now();
  const wasm = new URL(document.querySelector('main').dataset.wasm, location.href).href;
  let model, runtimeMs;
  try {
    await loadRuntime(wasm);
    runtimeMs = performance.now() - t0;
    model = await OnDeviceModel.load('model.tflite', wasm);
  } catch (e) {
    $('status').textContent = '';
    $('error').textContent = `The model could not be loaded in this browser: ${e.message}`;
    show('error', true);
    return;
  }
  // load timings since navigation start, for the browser test
  window.dermai = {model, fit, decodeImage, runtimeMs, loadMs: performance.now() - t0,
                   scriptStartMs: t0};
  const m = model.meta;
  $('model-info').textContent = `${$('model-info').textContent}: ${m.quantization} LiteRT model, ` +
    `input ${m.input.width}x${m.input.height} RGB, temperature ${Number(m.temperature).toFixed(3)}, ` +
    `classes ${m.classes.join(', ')}` +
    (model.colourP === null ? '.' : `, Shades-of-Grey colour constancy (p = ${model.colourP}).`);
  describeGuard(model);
  metadataForm(model);
  $('status').textContent = navigator.onLine ? 'Ready. Choose or take a photo.'
    : 'Ready (offline). Choose or take a photo.';
  $('status').dataset.ready = '1';

  async function onFile(ev) {
    const file = ev.target.files && ev.target.files[0];
    ev.target.value = '';
    if (!file) return;
    show('error', false);
    show('ood', false);
    show('result', false);
    $('status').textContent = 'Analysing on this device…';
    try {
      let img;
      try {
        img = await decodeImage(file);
      } catch {
        throw new Error('This file is not an image the browser can read.');
      }
      const t0 = performance.now();
      const fitted = fit(img, model.height, model.width);
      const result = await model.predict(fitted, metadataAnswers());
      result.preprocessMs = performance.now() - t0 - result.inferenceMs;
      render(model, fitted, result);
      show('result', true);
      $('status').textContent = 'Done.';
    } catch (e) {
      $('status').textContent = '';
      $('error').textContent = e.message;
      show('error', true);
    }
  }
  $('file-take').addEventListener('change', onFile);
  $('file-choose').addEventListener('change', onFile);
}

// The optional patient metadata of a model trained with it: one control per field, "unknown"
// by default, the choices the model's own recorded vocabulary (its embedded `metadata`).
function metadataForm(model) {
  const doc = model.metadataDoc;
  if (!doc) return;
  const box = $('metadata');
  for (const field of doc.fields) {
    const label = document.createElement('label');
    label.htmlFor = `meta-${field}`;
    label.textContent = field.replace(/_/g, ' ');
    let control;
    if (field === 'age') {
      control = document.createElement('input');
      Object.assign(control, {type: 'number', min: 0, max: 130, step: 1, placeholder: 'unknown'});
    } else {
      control = document.createElement('select');
      control.append(new Option('unknown', '', true, true));
      for (const v of doc.vocab[field]) control.append(new Option(v, v));
    }
    control.id = `meta-${field}`;
    control.dataset.field = field;
    box.append(label, control);
  }
  show('metadata', true);
}

function metadataAnswers() {
  const answers = {};
  for (const el of document.querySelectorAll('#metadata [data-field]')) {
    if (el.value !== '') answers[el.dataset.field] = el.value;
  }
  return answers;
}

main();

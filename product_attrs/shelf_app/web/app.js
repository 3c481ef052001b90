// The shelf app: pick a photo or point the camera, the champion detector runs in onnxruntime-web, boxes,
// facings per class, share of shelf and the frame rate are shown. Static files only; sw.js keeps it offline.
// Query parameters (tests, benchmarks): ep=wasm|webgpu (default: webgpu when the browser has an adapter),
// threads=N (default: the cores, at most 4; 1 without cross-origin isolation).
import * as P from './processing.mjs';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45'];

let ort = null;
let session = null;
let model = null;
let runtime = {};
let threshold = P.DEFAULT_THRESHOLD;
let busy = Promise.resolve();

async function chooseEp() {
  const asked = params.get('ep');
  if (asked === 'wasm' || asked === 'webgpu') return asked;
  if (!navigator.gpu) return 'wasm';
  try {
    return (await navigator.gpu.requestAdapter()) ? 'webgpu' : 'wasm';
  } catch {
    return 'wasm';
  }
}

async function init() {
  model = await (await fetch('model.json')).json();
  threshold = model.threshold;
  $('threshold').value = String(threshold);
  $('threshold-value').textContent = threshold.toFixed(2);
  $('version').textContent = model.version;
  for (const url of model.demos ?? []) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = `demo ${url.split('/').pop().split('_')[0]}`;
    b.addEventListener('click', () => serial(async () => showBlob(await fetchBlob(url)))
      .catch((err) => { $('status').textContent = String(err); }));
    $('demos').appendChild(b);
  }
  const ep = await chooseEp();
  const bundle = ep === 'webgpu' ? './ort/ort.webgpu.min.mjs' : './ort/ort.wasm.min.mjs';
  ort = await import(bundle);
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const isolated = self.crossOriginIsolated === true;
  const wanted = Number(params.get('threads')) || Math.min(navigator.hardwareConcurrency || 1, 4);
  const threads = isolated ? wanted : 1;
  ort.env.wasm.numThreads = threads;
  const providers = ep === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'];
  session = await ort.InferenceSession.create('model.onnx', {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
  });
  runtime = { ep, threads, isolated, ort_version: ort.env.versions?.web ?? '' };
  $('runtime').textContent =
    `${ep.toUpperCase()}, ${threads} thread${threads > 1 ? 's' : ''}` +
    (isolated ? '' : ' (this host does not send cross-origin isolation headers: one thread)');
  $('status').textContent = 'ready: pick a photo or start the camera';
  document.body.dataset.ready = 'true';
}

async function decodeBlob(blob) {
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  return frameOf(bmp, bmp.width, bmp.height);
}

function frameOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  return { rgba: ctx.getImageData(0, 0, width, height).data, width, height, source };
}

async function detectFrame(frame, thr) {
  const t0 = performance.now();
  const p = P.prepare(frame.rgba, frame.width, frame.height, model);
  const t1 = performance.now();
  const out = await session.run({ image: new ort.Tensor('float32', p.data, [3, p.inH, p.inW]) });
  const t2 = performance.now();
  const r = P.summarize(out.boxes.data, out.labels.data, out.scores.data, thr, p.sx, p.sy, model.labels);
  r.input_size = [p.inW, p.inH];
  r.ms = { prepare: t1 - t0, model: t2 - t1, total: performance.now() - t0 };
  return r;
}

function draw(frame, r) {
  const canvas = $('view');
  canvas.width = frame.width;
  canvas.height = frame.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(frame.source, 0, 0);
  const names = Object.keys(r.counts);
  ctx.lineWidth = Math.max(2, Math.round(frame.width / 300));
  ctx.font = `${Math.max(10, Math.round(frame.width / 40))}px sans-serif`;
  r.boxes.forEach((b, i) => {
    const name = model.labels[r.labels[i]] ?? `label ${r.labels[i]}`;
    ctx.strokeStyle = ctx.fillStyle = COLORS[Math.max(0, names.indexOf(name)) % COLORS.length];
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
  });
  const rows = names.map((n, i) =>
    `<tr><td><span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>${n}</td>` +
    `<td>${r.counts[n]}</td><td>${(100 * r.share_facings[n]).toFixed(1)}%</td>` +
    `<td>${(100 * r.share_width[n]).toFixed(1)}%</td></tr>`);
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
  $('counts').innerHTML = rows.join('') + `<tr class="total"><td>all</td><td>${total}</td><td></td><td></td></tr>`;
  $('timing').textContent =
    `${r.ms.total.toFixed(0)} ms per frame (${(1000 / r.ms.total).toFixed(1)} frames/s; model ` +
    `${r.ms.model.toFixed(0)} ms) at ${r.input_size[0]}x${r.input_size[1]}`;
}

function serial(fn) {
  const next = busy.then(fn, fn);
  busy = next.catch(() => {});
  return next;
}

async function showBlob(blob) {
  const frame = await decodeBlob(blob);
  const r = await detectFrame(frame, threshold);
  draw(frame, r);
  $('status').textContent = `${r.boxes.length} products at score >= ${threshold.toFixed(2)}`;
  return r;
}

let stream = null;
async function camera() {
  if (stream) {
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $('camera').textContent = 'Start camera';
    return;
  }
  stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  const video = $('video');
  video.srcObject = stream;
  await video.play();
  $('camera').textContent = 'Stop camera';
  let last = performance.now();
  const loop = async () => {
    if (!stream) return;
    const frame = frameOf(video, video.videoWidth, video.videoHeight);
    const r = await serial(() => detectFrame(frame, threshold));
    draw(frame, r);
    const now = performance.now();
    $('status').textContent = `camera: ${(1000 / (now - last)).toFixed(1)} frames/s, ${r.boxes.length} products`;
    last = now;
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}

async function fetchBlob(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.blob();
}

// The hooks the browser tests and the benchmark drive (JSON in, JSON out).
window.shelfApp = {
  ready: null,
  runtime: () => runtime,
  model: () => model,
  async detectUrl(url, thr) {
    return serial(async () => {
      const frame = await decodeBlob(await fetchBlob(url));
      const r = await detectFrame(frame, thr ?? threshold);
      draw(frame, r);
      $('status').textContent = `${url}: ${r.boxes.length} products at score >= ${(thr ?? threshold).toFixed(2)}`;
      r.image_size = [frame.width, frame.height];
      r.pixel_checksum = P.pixelChecksum(frame.rgba, frame.width, frame.height);
      return r;
    });
  },
  async benchmark(url, frames, warmup) {
    return serial(async () => {
      const frame = await decodeBlob(await fetchBlob(url));
      const total = [], modelMs = [];
      for (let i = 0; i < (warmup ?? 2) + frames; i++) {
        const r = await detectFrame(frame, threshold);
        if (i >= (warmup ?? 2)) { total.push(r.ms.total); modelMs.push(r.ms.model); }
      }
      return { total, model: modelMs, runtime };
    });
  },
  async offlineReady() {
    if (!('serviceWorker' in navigator)) return false;
    await navigator.serviceWorker.ready; // active only once its install step cached every file (sw.js)
    return !!navigator.serviceWorker.controller;
  },
};

$('photo').addEventListener('change', (e) => {
  const f = e.target.files[0];
  if (f) serial(() => showBlob(f)).catch((err) => { $('status').textContent = String(err); });
});
$('camera').addEventListener('click', () => camera().catch((err) => { $('status').textContent = String(err); }));
$('threshold').addEventListener('input', (e) => {
  threshold = Number(e.target.value);
  $('threshold-value').textContent = threshold.toFixed(2);
});

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('sw.js').catch((err) => console.warn('no service worker:', err));
}
window.shelfApp.ready = init().catch((err) => {
  $('status').textContent = `could not start: ${err}`;
  document.body.dataset.ready = 'error';
  throw err;
});
busy = window.shelfApp.ready.catch(() => {}); // every detection waits for the session

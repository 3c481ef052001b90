// The shelf app's pre- and post-processing: the mirror of product_attrs/shelf_app/processing.py, line for
// line (see its docstring). Integer windows and one float64 division per value, then Float32Array: the
// same bits as numpy's (a / (counts * 255)).astype(float32).

export const DEFAULT_THRESHOLD = 0.5;

const idiv = (a, b) => Math.floor(a / b); // exact: every operand here is a small non-negative integer

export function fitSize(width, height, minSize, maxSize) {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  let newShort, newLong;
  if (long * minSize <= maxSize * short) {
    newShort = minSize;
    newLong = idiv(2 * long * minSize + short, 2 * short);
  } else {
    newLong = maxSize;
    newShort = idiv(2 * short * maxSize + long, 2 * long);
  }
  newShort = Math.max(1, newShort);
  newLong = Math.max(1, newLong);
  return width >= height ? [newLong, newShort] : [newShort, newLong];
}

function windows(src, dst) {
  const starts = new Int32Array(dst);
  const sizes = new Int32Array(dst);
  for (let i = 0; i < dst; i++) {
    const start = idiv(i * src, dst);
    const end = idiv((i + 1) * src, dst);
    starts[i] = start;
    sizes[i] = Math.max(end, start + 1) - start;
  }
  return { starts, sizes };
}

// rgba: Uint8ClampedArray (ImageData.data) of width x height; returns Float32Array 3 x outH x outW.
export function areaResize(rgba, width, height, outW, outH) {
  const ys = windows(height, outH);
  const xs = windows(width, outW);
  const plane = outW * outH;
  const out = new Float32Array(3 * plane);
  // Column sums per output column first (one pass over each source row), then rows of windows.
  const rowSums = new Float64Array(outW * 3);
  for (let oy = 0; oy < outH; oy++) {
    rowSums.fill(0);
    const y0 = ys.starts[oy];
    for (let y = y0; y < y0 + ys.sizes[oy]; y++) {
      const rowBase = y * width * 4;
      for (let ox = 0; ox < outW; ox++) {
        const x0 = xs.starts[ox];
        let r = 0, g = 0, b = 0;
        for (let x = x0; x < x0 + xs.sizes[ox]; x++) {
          const p = rowBase + x * 4;
          r += rgba[p];
          g += rgba[p + 1];
          b += rgba[p + 2];
        }
        rowSums[ox * 3] += r;
        rowSums[ox * 3 + 1] += g;
        rowSums[ox * 3 + 2] += b;
      }
    }
    for (let ox = 0; ox < outW; ox++) {
      const denom = ys.sizes[oy] * xs.sizes[ox] * 255;
      const o = oy * outW + ox;
      out[o] = rowSums[ox * 3] / denom;
      out[plane + o] = rowSums[ox * 3 + 1] / denom;
      out[2 * plane + o] = rowSums[ox * 3 + 2] / denom;
    }
  }
  return out;
}

// [sum of the RGB bytes, sum of byte * (index % 1000 + 1)] as processing.pixel_checksum.
export function pixelChecksum(rgba, width, height) {
  let s = 0, w = 0, i = 0;
  const n = width * height * 4;
  for (let p = 0; p < n; p += 4) {
    for (let c = 0; c < 3; c++, i++) {
      s += rgba[p + c];
      w += rgba[p + c] * ((i % 1000) + 1);
    }
  }
  return [s, w];
}

export function prepare(rgba, width, height, model) {
  const [inW, inH] = fitSize(width, height, model.min_size, model.max_size);
  return { data: areaResize(rgba, width, height, inW, inH), inW, inH, sx: width / inW, sy: height / inH };
}

// boxes: Float32Array n x 4, labels: BigInt64Array or Int32Array n, scores: Float32Array n.
export function summarize(boxes, labels, scores, threshold, sx, sy, names) {
  const keys = Object.keys(names).map(Number).sort((a, b) => a - b);
  const counts = {}, widths = {};
  for (const k of keys) { counts[names[k]] = 0; widths[names[k]] = 0; }
  const outBoxes = [], outLabels = [], outScores = [];
  for (let i = 0; i < scores.length; i++) {
    const score = scores[i];
    if (!(score >= threshold)) continue;
    const b = [boxes[i * 4] * sx, boxes[i * 4 + 1] * sy, boxes[i * 4 + 2] * sx, boxes[i * 4 + 3] * sy];
    const lab = Number(labels[i]);
    const name = names[lab] ?? `label ${lab}`;
    counts[name] = (counts[name] ?? 0) + 1;
    widths[name] = (widths[name] ?? 0) + Math.max(0, b[2] - b[0]);
    outBoxes.push(b);
    outLabels.push(lab);
    outScores.push(score);
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const totalW = Object.values(widths).reduce((a, b) => a + b, 0);
  const shareFacings = {}, shareWidth = {};
  for (const k of Object.keys(counts)) {
    shareFacings[k] = total ? counts[k] / total : 0;
    shareWidth[k] = totalW ? widths[k] / totalW : 0;
  }
  return {
    boxes: outBoxes, labels: outLabels, scores: outScores, counts,
    share_facings: shareFacings, share_width: shareWidth,
  };
}

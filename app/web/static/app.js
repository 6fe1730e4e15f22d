// The dashboard's script: every number it shows comes from the JSON API under /v1.
"use strict";

const GIB = 2 ** 30;
const CATEGORIES = ["weights", "gradients", "optimizer", "activations", "ephemeral", "resident"];
// Colour-blind-safe palette (Okabe-Ito); every chart also has a table and labels.
const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const TERMINAL = new Set(["succeeded", "failed", "oom", "cancelled"]);
const $ = (id) => document.getElementById(id);

async function api(method, url, body, headers = {}) {
  const options = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = { title: response.statusText, detail: `HTTP ${response.status}` };
  }
  return { ok: response.ok, status: response.status, data };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// GiB as the API prints it: 4 significant digits, scientific when huge (strings pass through).
function gibText(gib) {
  if (typeof gib === "string") return gib;
  if (gib === null || gib === undefined || !Number.isFinite(gib)) return "–";
  if (gib !== 0 && (Math.abs(gib) >= 1e5 || Math.abs(gib) < 1e-3)) return gib.toExponential(3);
  return String(Number(gib.toPrecision(4)));
}

const bytesGib = (bytes) => (bytes === null || bytes === undefined ? null : bytes / GIB);
const fixed = (value, digits) => (value === null || value === undefined ? "–" : value.toFixed(digits));

function specLabel(spec) {
  if (!spec) return "?";
  if (spec.family) return `${spec.family} k=${spec.k} N_T=${spec.nt} b=${spec.batch}`;
  return `model (${(spec.layers || []).length} layers) b=${spec.batch}`;
}

function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, status);
}

// Problem details beside the fields they name: an element `${prefix}${field}` per field,
// `${prefix}` for the rest. Returns the general message, if any.
function clearProblems(prefix) {
  document.querySelectorAll(`[id^="${prefix}"]`).forEach((node) => {
    if (node.classList.contains("field-error")) node.textContent = "";
  });
  document.querySelectorAll(".invalid").forEach((node) => node.classList.remove("invalid"));
}

function showProblem(prefix, problem, fieldOf = (field) => field) {
  const errors = problem.errors && problem.errors.length ? problem.errors : [{ field: "", message: problem.detail || problem.title }];
  for (const error of errors) {
    const original = error.field || "";
    const field = fieldOf(original);
    const target = $(`${prefix}${field}`) || $(`${prefix}${field.split(".")[0]}`) || $(prefix);
    // Name the field unless the message sits beside exactly that field.
    const text = original && target.id !== `${prefix}${original}` ? `${original}: ${error.message}` : error.message;
    target.textContent = target.textContent ? `${target.textContent}; ${text}` : text;
    const input = target.parentElement && target.parentElement.querySelector("input, select, textarea");
    if (input && target.id !== prefix) input.classList.add("invalid");
  }
}

function plot(id, traces, layout) {
  const base = { margin: { t: 30, r: 20, b: 60, l: 70 }, font: { family: "system-ui, sans-serif", size: 12 }, legend: { orientation: "h", y: -0.2 } };
  return Plotly.react($(id), traces, { ...base, ...layout }, PLOT_CONFIG);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  return search.toString();
}

// --- Overview -----------------------------------------------------------------------------

function jobRow(job, detailed) {
  const pct = Math.round(job.progress * 100);
  const cells = [
    el("td", {}, el("a", { href: `/jobs/${job.id}` }, `#${job.id}`)),
    el("td", {}, job.kind),
    el("td", {}, specLabel(job.spec)),
    el("td", {}, job.device_class || "cpu"),
    el("td", {}, statusBadge(job.status)),
    el("td", {}, el("progress", { max: "1", value: String(job.progress), "aria-label": `progress of job ${job.id}` }), " ", el("span", { class: "pct" }, `${pct}%`)),
  ];
  if (detailed) {
    const step = job.step !== undefined && job.step !== null ? `step ${job.step}${job.total_steps ? "/" + job.total_steps : ""}` : "";
    cells.push(el("td", {}, [job.phase || "", step].filter(Boolean).join(" · ") || "–"));
    cells.push(el("td", {}, el("time", { datetime: job.created_at }, job.created_at.replace("T", " ").slice(0, 19))));
    cells.push(el("td", { class: "error-cell" }, job.error || ""));
  }
  return el("tr", { dataset: { job: job.id, status: job.status } }, cells);
}

async function overviewPage() {
  const refresh = async () => {
    const { ok, data } = await api("GET", "/v1/overview");
    if (!ok) return;
    for (const key of ["specs", "estimates", "measurements", "jobs"]) $(`count-${key}`).textContent = data[key];
    for (const [status, count] of Object.entries(data.jobs_by_status)) {
      const cell = document.querySelector(`[data-status="${status}"]`);
      if (cell) cell.textContent = count;
    }
    const table = $("latest-jobs");
    if (table) fill(table.tBodies[0], data.latest_jobs.map((job) => jobRow(job, false)));
  };
  setInterval(refresh, 2000);
}

// --- Estimate -----------------------------------------------------------------------------

function numberOrText(value) {
  if (value.trim() === "") return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : value;
}

async function readSpec(form) {
  if (form.source.value === "family") {
    const spec = { family: form.family.value, precision: form.precision.value, optimizer: form.optimizer.value };
    for (const name of ["k", "nt", "batch"]) {
      const value = numberOrText(form[name].value);
      if (value !== undefined) spec[name] = value;
    }
    return { spec };
  }
  const parsed = await api("POST", "/v1/specs/parse", { text: form.text.value });
  if (!parsed.ok) return { problem: parsed.data };
  return { spec: parsed.data.spec };
}

function curveBatches(batch, maxBatch) {
  const top = Math.max(batch, maxBatch, 1) * 4;
  const batches = new Set([batch]);
  if (maxBatch > 0) batches.add(maxBatch);
  for (let b = 1; b <= top && batches.size < 30; b *= 2) batches.add(b);  // within both modes' limits
  return [...batches].sort((a, b) => a - b);
}

function renderEstimate(estimate, gate, maxBatch, curve, device) {
  $("estimate-result").hidden = false;
  $("total-gib").textContent = gibText(estimate.total_gib);
  const verdict = gate.verdicts[0];
  const badge = $("verdict");
  badge.className = `verdict ${verdict.fits ? "fits" : "exceeds"}`;
  badge.textContent = `${verdict.fits ? "✓ fits" : "✗ does not fit"} ${device.label}`;
  const calibrated = estimate.calibrated;
  $("total-detail").textContent =
    `${estimate.total_bytes_decimal} bytes, ${estimate.mode} mode, engine ${estimate.engine_version}, estimate #${estimate.id}. ` +
    (calibrated ? `Calibrated for ${device.name}: ${gibText(calibrated.total_gib)} GiB (${calibrated.calibration.source}, ${calibrated.calibration.pairs} pairs). ` : "") +
    verdict.reason;

  const breakdown = estimate.breakdown;
  plot("breakdown-chart",
    CATEGORIES.map((category, i) => ({ type: "bar", orientation: "h", name: category, y: ["estimate"], x: [breakdown[category] / GIB], marker: { color: COLOURS[i] }, hovertemplate: `${category}: %{x:.4g} GiB<extra></extra>` })),
    { barmode: "stack", xaxis: { title: { text: "GiB" } }, yaxis: { showticklabels: false }, margin: { t: 10, r: 20, b: 70, l: 20 } });
  fill($("breakdown-table").tBodies[0], CATEGORIES.map((category) => el("tr", {},
    el("th", { scope: "row" }, category),
    el("td", { class: "num" }, Number.isFinite(breakdown[category]) ? breakdown[category].toLocaleString("en-US") : "–"),
    el("td", { class: "num" }, gibText(breakdown[category] / GIB)),
    el("td", { class: "num" }, `${((100 * breakdown[category]) / estimate.total_bytes).toFixed(1)}%`))));

  const points = curve.points;
  const vramGib = device.memory_bytes / GIB;
  const traces = [
    { type: "scatter", mode: "lines+markers", name: "estimate", x: points.map((p) => p.batch), y: points.map((p) => p.total_bytes / GIB), line: { color: COLOURS[0] } },
    { type: "scatter", mode: "lines", name: `${device.name} memory (${gibText(vramGib)} GiB)`, x: [points[0].batch, points[points.length - 1].batch], y: [vramGib, vramGib], line: { color: COLOURS[5], dash: "dash" } },
  ];
  const annotations = [];
  if (maxBatch.max_batch > 0) {
    const gib = maxBatch.total_bytes / GIB;
    traces.push({ type: "scatter", mode: "markers", name: `max batch ${maxBatch.max_batch}`, x: [maxBatch.max_batch], y: [gib], marker: { symbol: "diamond", size: 12, color: COLOURS[2] } });
    annotations.push({ x: Math.log10(maxBatch.max_batch), y: Math.log10(gib), text: `max batch ${maxBatch.max_batch}`, showarrow: true, arrowhead: 2, ay: -30 });
  }
  plot("curve-chart", traces, { xaxis: { title: { text: "batch" }, type: "log" }, yaxis: { title: { text: "GiB" }, type: "log" }, annotations });
  $("max-batch").textContent = maxBatch.max_batch > 0
    ? `Largest batch that fits ${device.label}: ${maxBatch.max_batch} (${gibText(maxBatch.total_gib)} GiB, calibrated).`
    : `Not even batch 1 fits ${device.label}.`;
  if (curve.skipped.length) {
    $("max-batch").textContent += ` The curve is thinned to ${points.length} points (a deep model in framework mode plans each batch anew; skipped: ${curve.skipped.join(", ")}).`;
  }
  fill($("curve-table").tBodies[0], points.map((p) => el("tr", {},
    el("td", { class: "num" }, p.batch), el("td", { class: "num" }, gibText(p.total_gib)),
    el("td", {}, maxBatch.max_batch >= p.batch ? "yes" : "no"))));

  fill($("layers-table").tBodies[0], estimate.layers.map((layer) => el("tr", {},
    el("td", { class: "num" }, layer.index), el("td", {}, layer.name), el("td", {}, layer.type), el("td", {}, layer.part),
    el("td", { class: "num" }, layer.output_features), el("td", { class: "num" }, Number(layer.params).toLocaleString("en-US")),
    ...["weights", "gradients", "optimizer", "activations", "ephemeral"].map((c) => el("td", { class: "num" }, gibText(layer[c] / GIB))),
    el("td", { class: "num" }, gibText(layer.total / GIB)), el("td", {}, layer.note))));
}

async function estimatePage() {
  const form = $("estimate-form");
  const toggle = () => {
    const family = form.source.value === "family";
    $("family-fields").hidden = !family;
    $("text-fields").hidden = family;
  };
  form.querySelectorAll('input[name="source"]').forEach((radio) => radio.addEventListener("change", toggle));
  toggle();
  const devices = {};
  for (const option of form.device.options) devices[option.value] = option;
  const catalog = await api("GET", "/v1/devices");
  const byName = Object.fromEntries((catalog.data || []).map((d) => [d.name, d]));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems("err-");
    const status = $("estimate-status");
    status.textContent = "estimating…";
    const textMode = form.source.value === "text";
    // A pasted spec's field errors go beside the text box, naming the field.
    const fieldOf = (field) => (textMode && !["mode", "device"].includes(field.split(".")[0]) ? "text" : field);
    const { spec, problem } = await readSpec(form);
    if (problem) {
      showProblem("err-", problem, fieldOf);
      status.textContent = "the spec could not be read";
      return;
    }
    const mode = form.mode.value;
    const device = byName[form.device.value];
    const estimate = await api("POST", "/v1/estimates", { ...spec, mode, device: device.name });
    if (!estimate.ok) {
      showProblem("err-", estimate.data, fieldOf);
      status.textContent = `${estimate.data.title}: see the fields marked`;
      $("estimate-result").hidden = true;
      return;
    }
    const [gate, maxBatch] = await Promise.all([
      api("POST", "/v1/gate", { device: device.name, mode, specs: [{ name: "spec", spec }] }),
      api("POST", "/v1/max-batch", { device: device.name, mode, spec }),
    ]);
    const batch = estimate.data.batch;
    const curve = await api("POST", "/v1/batch-curve", { spec, mode, batches: curveBatches(batch, maxBatch.ok ? maxBatch.data.max_batch : 0) });
    for (const answer of [gate, maxBatch, curve]) {
      if (!answer.ok) {
        showProblem("err-", answer.data, fieldOf);
        status.textContent = "";
        return;
      }
    }
    renderEstimate(estimate.data, gate.data, maxBatch.data, curve.data, device);
    status.textContent = "done";
  });
}

// --- Estimate vs measured -----------------------------------------------------------------

const PAGE_SIZE = 50;

function pairLabel(pair) {
  const spec = pair.family ? `${pair.family} k=${pair.k} N_T=${pair.nt}` : "model";
  return `#${pair.id}<br>${spec}<br>b=${pair.batch}`;
}

function renderPairs(pairs, summary, device) {
  const labels = pairs.map(pairLabel);
  const traces = [];
  CATEGORIES.forEach((category, i) => {
    const base = pairs.map((p) => CATEGORIES.slice(0, i).reduce((sum, c) => sum + (p.breakdown[c] || 0), 0) / GIB);
    traces.push({ type: "bar", name: `estimate: ${category}`, x: labels, y: pairs.map((p) => (p.breakdown[category] || 0) / GIB), base, offsetgroup: "estimate", legendgroup: "estimate", marker: { color: COLOURS[i] }, hovertemplate: `${category}: %{y:.4g} GiB<extra>%{x}</extra>` });
  });
  traces.push({ type: "bar", name: "measured (allocator peak)", x: labels, y: pairs.map((p) => bytesGib(p.measured_bytes)), offsetgroup: "measured", marker: { color: "#333333", pattern: { shape: "/" } } });
  if (pairs.some((p) => p.nvml_peak_bytes !== null)) {
    traces.push({ type: "bar", name: "NVML reading", x: labels, y: pairs.map((p) => bytesGib(p.nvml_peak_bytes)), offsetgroup: "nvml", marker: { color: "#999999", pattern: { shape: "." } } });
  }
  const annotations = pairs.filter((p) => p.status !== "ok").map((p) => ({ x: pairLabel(p), y: p.estimate_bytes / GIB, text: p.status.toUpperCase(), showarrow: true, arrowhead: 0, ay: -25, font: { color: "#b3261e" } }));
  plot("bars-chart", traces, { barmode: "group", yaxis: { title: { text: "GiB" } }, xaxis: { tickangle: 0, automargin: true }, annotations, margin: { t: 20, r: 20, b: 90, l: 70 } });

  const ok = pairs.filter((p) => p.status === "ok" && p.measured_bytes);
  const values = ok.flatMap((p) => [p.measured_bytes / GIB, p.estimate_bytes / GIB]);
  const low = values.length ? Math.min(...values) / 1.5 : 0.01;
  const high = values.length ? Math.max(...values) * 1.5 : 1;
  const scatter = [
    { type: "scatter", mode: "markers", name: "pairs", x: ok.map((p) => p.measured_bytes / GIB), y: ok.map((p) => p.estimate_bytes / GIB), text: ok.map((p) => pairLabel(p).replaceAll("<br>", " ")), marker: { color: COLOURS[0], size: 8 } },
    { type: "scatter", mode: "lines", name: "y = x", x: [low, high], y: [low, high], line: { color: "#666666", dash: "dot" } },
  ];
  const fit = summary.calibration;
  let note = "No calibration for this device (not in the catalog).";
  if (fit) {
    note = `Calibration (${fit.mode} mode, ${fit.source}, ${fit.pairs} pairs): measured ≈ ${fit.scale.toFixed(4)} × estimate + ${(fit.offset_bytes / GIB).toFixed(4)} GiB.`;
    if (fit.source !== "none") {
      const estimates = [low, high];
      scatter.push({ type: "scatter", mode: "lines", name: `calibration fit (${fit.source})`, x: estimates.map((e) => fit.scale * e + fit.offset_bytes / GIB), y: estimates, line: { color: COLOURS[5] } });
    }
  }
  $("calibration-note").textContent = note;
  plot("scatter-chart", scatter, { xaxis: { title: { text: "measured GiB" }, type: "log" }, yaxis: { title: { text: "estimate GiB" }, type: "log" } });

  plot("histogram-chart", [{ type: "bar", name: "pairs", x: summary.histogram.map((h) => h.bin_pct), y: summary.histogram.map((h) => h.count), marker: { color: COLOURS[0] } }],
    { xaxis: { title: { text: "signed error % (estimate − measured) / measured" }, type: "category" }, yaxis: { title: { text: "pairs" } } });
  fill($("histogram-table").tBodies[0], summary.histogram.map((h) => el("tr", {}, el("td", {}, h.bin_pct), el("td", { class: "num" }, h.count))));

  fill($("pairs-table").tBodies[0], pairs.map((p) => el("tr", { class: p.status === "ok" ? "" : "oom-row", dataset: { id: p.id } },
    el("td", { class: "num" }, p.id), el("td", {}, p.family ? `${p.family} k=${p.k} N_T=${p.nt}` : "model"), el("td", {}, p.mode),
    el("td", { class: "num" }, p.batch),
    el("td", { class: "num", dataset: { bytes: p.estimate_bytes } }, fixed(bytesGib(p.estimate_bytes), 4)),
    el("td", { class: "num", dataset: { bytes: p.measured_bytes ?? "" } }, p.measured_bytes === null ? p.status.toUpperCase() : fixed(bytesGib(p.measured_bytes), 4)),
    el("td", { class: "num" }, p.nvml_peak_bytes === null ? "–" : fixed(bytesGib(p.nvml_peak_bytes), 4)),
    el("td", { class: "num" }, p.error_pct === null ? "–" : p.error_pct.toFixed(2)),
    el("td", {}, statusBadge(p.status)),
    el("td", {}, el("time", { datetime: p.created_at }, p.created_at.replace("T", " ").slice(0, 19))),
    el("td", {}, p.framework_versions.tensorflow || "–"),
    el("td", {}, p.quantity))));
}

// Model sizes and latencies: the measured value (and the estimate it tests, for a size)
// per stored measurement, in the quantity's unit; the allocator's categories do not apply.
const QUANTITY_HEAD = ["#", "Spec", "File", "Measured as", "Estimate", "Measured", "Unit", "Error %", "Status", "When", "TF", "Quantity"];
const UNIT_SCALE = { bytes: [2 ** 10, "KiB"], us: [1, "µs"] };

function measuredAs(p) {
  return p.quantity === "latency" ? p.detail.delegate : p.detail.size === "gzip" ? "gzip of file" : "file";
}

function renderQuantity(pairs, summary, quantity) {
  const [scale, unit] = UNIT_SCALE[pairs.length ? pairs[0].unit : quantity === "latency" ? "us" : "bytes"];
  const labels = pairs.map((p) => `#${p.id}<br>${p.detail.file || "?"}<br>${measuredAs(p)}`);
  const traces = [];
  if (quantity === "model_size") traces.push({ type: "bar", name: "estimate", x: labels, y: pairs.map((p) => p.estimated_value / scale), marker: { color: COLOURS[0] } });
  traces.push({ type: "bar", name: `measured (${quantity.replace("_", " ")})`, x: labels, y: pairs.map((p) => p.measured_value / scale), marker: { color: "#333333", pattern: { shape: "/" } } });
  plot("bars-chart", traces, { barmode: "group", yaxis: { title: { text: unit } }, xaxis: { tickangle: 0, automargin: true }, margin: { t: 20, r: 20, b: 90, l: 70 } });
  const ok = pairs.filter((p) => p.estimated_value !== null && p.measured_value);
  const values = ok.flatMap((p) => [p.measured_value / scale, p.estimated_value / scale]);
  const low = values.length ? Math.min(...values) / 1.5 : 1;
  const high = values.length ? Math.max(...values) * 1.5 : 10;
  plot("scatter-chart", [
    { type: "scatter", mode: "markers", name: "pairs", x: ok.map((p) => p.measured_value / scale), y: ok.map((p) => p.estimated_value / scale), text: ok.map((p) => `#${p.id} ${p.detail.file}`), marker: { color: COLOURS[0], size: 8 } },
    { type: "scatter", mode: "lines", name: "y = x", x: [low, high], y: [low, high], line: { color: "#666666", dash: "dot" } },
  ], { xaxis: { title: { text: `measured ${unit}` }, type: "log" }, yaxis: { title: { text: `estimate ${unit}` }, type: "log" } });
  $("calibration-note").textContent = quantity === "latency"
    ? "Latency has no estimate (the estimator has no latency model): measured values only."
    : "Calibration fits training peaks only; model sizes are compared as they are.";
  plot("histogram-chart", [{ type: "bar", name: "pairs", x: summary.histogram.map((h) => h.bin_pct), y: summary.histogram.map((h) => h.count), marker: { color: COLOURS[0] } }],
    { xaxis: { title: { text: "signed error % (estimate − measured) / measured" }, type: "category" }, yaxis: { title: { text: "pairs" } } });
  fill($("histogram-table").tBodies[0], summary.histogram.map((h) => el("tr", {}, el("td", {}, h.bin_pct), el("td", { class: "num" }, h.count))));
  $("pairs-table").tHead.replaceChildren(el("tr", {}, QUANTITY_HEAD.map((name) => el("th", { scope: "col" }, name))));
  const shown = (value) => (value === null ? "–" : fixed(value / scale, scale === 1 ? 1 : 2));
  fill($("pairs-table").tBodies[0], pairs.map((p) => el("tr", { dataset: { id: p.id } },
    el("td", { class: "num" }, p.id), el("td", {}, p.family ? `${p.family} k=${p.k} N_T=${p.nt}` : p.kind), el("td", {}, p.detail.file || "–"),
    el("td", {}, measuredAs(p)),
    el("td", { class: "num", dataset: { value: p.estimated_value ?? "" } }, shown(p.estimated_value)),
    el("td", { class: "num", dataset: { value: p.measured_value ?? "" } }, shown(p.measured_value)),
    el("td", {}, unit), el("td", { class: "num" }, p.error_pct === null ? "–" : p.error_pct.toFixed(2)),
    el("td", {}, statusBadge(p.status)),
    el("td", {}, el("time", { datetime: p.created_at }, p.created_at.replace("T", " ").slice(0, 19))),
    el("td", {}, p.framework_versions.tensorflow || "–"), el("td", {}, p.quantity))));
}

const EMPTY_HINT = {
  training_peak: (device) => `run phymem profile --family bae --k 2 --nt 2 --submit --device-class ${device} --api-key … (a worker on a ${device} machine measures it), or submit a profile job on the Jobs page.`,
  model_size: () => "run phymem compress --family csinet --gamma 1/64 --measure --store (TFLite files measured on this machine's CPU).",
  latency: () => "run phymem compress --family csinet --gamma 1/64 --measure --latency-runs 200 --store (needs the compress extra's LiteRT interpreter).",
};

async function measuredPage() {
  const form = $("measured-filters");
  const params = new URLSearchParams(location.search);
  for (const name of ["device", "family", "quantity", "mode", "page"]) if (params.get(name)) form[name].value = params.get(name);
  const peakHead = $("pairs-table").tHead.cloneNode(true);
  const load = async () => {
    const device = form.device.value;
    const page = Math.max(1, Number(form.page.value) || 1);
    const quantity = form.quantity.value;
    const filters = { device, family: form.family.value, quantity, mode: form.mode.value };
    history.replaceState(null, "", `?${query({ ...filters, page })}`);
    const [summary, list] = await Promise.all([
      api("GET", `/v1/measurements/summary?${query(filters)}`),
      api("GET", `/v1/measurements?${query({ ...filters, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE })}`),
    ]);
    const empty = $("measured-empty");
    if (!summary.ok || !list.ok) {
      empty.hidden = false;
      empty.textContent = (summary.ok ? list : summary).data.detail;
      return;
    }
    const s = summary.data;
    if (s.count === 0) {
      $("measured-content").hidden = true;
      empty.hidden = false;
      const extra = filters.family || filters.mode ? " with these filters" : "";
      const what = quantity === "training_peak" ? "measurements" : `${quantity.replace("_", " ")} measurements`;
      empty.textContent = `No ${what} for ${device}${extra} yet: ${EMPTY_HINT[quantity](device)}`;
      return;
    }
    empty.hidden = true;
    $("measured-content").hidden = false;
    $("summary-scope").textContent = `(all ${s.count} ${quantity.replace("_", " ")} measurements on ${device}${filters.family ? ", " + filters.family : ""}${filters.mode ? ", " + filters.mode + " mode" : ""})`;
    $("sum-count").textContent = s.count;
    $("sum-oom").textContent = s.by_status.oom + (s.by_status.failed ? ` (+${s.by_status.failed} failed)` : "");
    $("sum-median").textContent = s.median_abs_error_pct === null ? "–" : `${s.median_abs_error_pct.toFixed(2)}%`;
    $("sum-max").textContent = s.max_abs_error_pct === null ? "–" : `${s.max_abs_error_pct.toFixed(2)}%`;
    const first = (page - 1) * PAGE_SIZE;
    $("pairs-range").textContent = `(${first + 1}–${first + list.data.items.length} of ${s.count}, oldest first)`;
    $("prev-page").disabled = page <= 1;
    $("next-page").disabled = first + list.data.items.length >= s.count;
    $("bars-title").textContent = quantity === "training_peak" ? "Estimate by category vs measured peak" : `Estimate vs measured ${quantity.replace("_", " ")}`;
    if (quantity === "training_peak") {
      $("pairs-table").tHead.replaceWith(peakHead.cloneNode(true));
      renderPairs(list.data.items, s, device);
    } else {
      renderQuantity(list.data.items, s, quantity);
    }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  for (const name of ["device", "family", "quantity", "mode"]) form[name].addEventListener("change", () => { form.page.value = 1; load(); });
  $("prev-page").addEventListener("click", () => { form.page.value = Math.max(1, Number(form.page.value) - 1); load(); });
  $("next-page").addEventListener("click", () => { form.page.value = Number(form.page.value) + 1; load(); });
  await load();
}

// --- Jobs ---------------------------------------------------------------------------------

const JOB_PAGE = 50;

async function jobTotal(status, kind) {
  const { ok, data } = await api("GET", "/v1/overview");
  if (!ok) return 0;
  return data.job_counts.filter((c) => (!status || c.status === status) && (!kind || c.kind === kind)).reduce((sum, c) => sum + c.count, 0);
}

function jobsList() {
  const form = $("jobs-filter");
  let fromEnd = 0; // pages back from the newest
  const load = async () => {
    const status = form.status.value;
    const kind = form.kind.value;
    const total = await jobTotal(status, kind);
    const offset = Math.max(0, total - JOB_PAGE * (fromEnd + 1));
    const limit = Math.min(JOB_PAGE, total - JOB_PAGE * fromEnd) || 1;
    const { ok, data } = await api("GET", `/v1/jobs?${query({ status, kind, limit: Math.max(1, limit), offset })}`);
    if (!ok) return;
    const items = data.items.slice().reverse(); // newest first
    fill($("jobs-table").tBodies[0], items.map((job) => jobRow(job, true)));
    $("jobs-empty").hidden = total > 0;
    $("jobs-range").textContent = total ? `(${items.length} of ${total}, newest first; updates live)` : "";
    $("jobs-older").disabled = offset === 0;
    $("jobs-newer").disabled = fromEnd === 0;
  };
  form.addEventListener("change", () => { fromEnd = 0; load(); });
  $("jobs-older").addEventListener("click", () => { fromEnd += 1; load(); });
  $("jobs-newer").addEventListener("click", () => { fromEnd = Math.max(0, fromEnd - 1); load(); });
  load();
  setInterval(load, 1500);
  return load;
}

function jobDetail(section) {
  const id = section.dataset.job;
  let timer = null;
  const load = async () => {
    const { ok, status, data } = await api("GET", `/v1/jobs/${id}`);
    if (!ok) {
      $("job-error").hidden = false;
      $("job-error").textContent = status === 404 ? `No job ${id}.` : data.detail;
      clearInterval(timer);
      return;
    }
    $("job-status").replaceChildren(statusBadge(data.status));
    $("job-progress").value = data.progress;
    $("job-pct").textContent = `${Math.round(data.progress * 100)}%`;
    $("job-phase").textContent = data.phase || "–";
    $("job-step").textContent = data.step === undefined || data.step === null ? "–" : `${data.step}${data.total_steps ? " / " + data.total_steps : ""}`;
    $("job-loss").textContent = data.loss === undefined || data.loss === null ? "–" : Number(data.loss).toPrecision(5);
    $("job-ebn0").textContent = data.ebn0_db === undefined || data.ebn0_db === null ? "–" : data.ebn0_db;
    $("job-error").hidden = !data.error;
    $("job-error").textContent = data.error ? `Error: ${data.error}` : "";
    $("job-training-link").hidden = data.kind !== "train";
    const rows = [["kind", data.kind], ["spec", JSON.stringify(data.spec)], ["device class", data.device_class], ["mode", data.mode],
      ["attempts", `${data.attempts} of ${data.max_attempts}`], ["params", JSON.stringify(data.params)], ["created", data.created_at],
      ["started", data.started_at || "–"], ["finished", data.finished_at || "–"], ["result", data.result ? JSON.stringify(data.result) : "–"]];
    fill($("job-fields").tBodies[0], rows.map(([key, value]) => el("tr", {}, el("th", { scope: "row" }, key), el("td", {}, el("code", {}, value)))));
    if (TERMINAL.has(data.status)) clearInterval(timer);
  };
  load();
  timer = setInterval(load, 1000);
}

function submitForm(reload) {
  const form = $("submit-form");
  const KEY = "phymem-api-key"; // sessionStorage: gone when the tab closes
  form.api_key.value = sessionStorage.getItem(KEY) || "";
  const sync = () => {
    const key = form.api_key.value;
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
    $("submit-button").disabled = !key;
    $("key-state").textContent = key ? "Kept for this tab only (sessionStorage)." : "Not stored.";
    if (!key) $("submit-status").textContent = "Enter the API key to submit.";
    else if ($("submit-status").textContent === "Enter the API key to submit.") $("submit-status").textContent = "";
  };
  form.api_key.addEventListener("input", sync);
  sync();
  const showTrain = () => { $("train-options").hidden = form.kind.value !== "train"; };
  form.kind.addEventListener("change", showTrain);
  showTrain();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems("serr-");
    let spec;
    try {
      spec = JSON.parse(form.spec.value);
    } catch (error) {
      $("serr-spec").textContent = `not valid JSON: ${error.message}`;
      form.spec.classList.add("invalid");
      return;
    }
    const body = { kind: form.kind.value, spec, device_class: form.device_class.value, steps: numberOrText(form.steps.value), mode: form.mode.value };
    if (form.kind.value === "train" && form.train.value.trim()) {
      try {
        Object.assign(body, JSON.parse(form.train.value));
      } catch (error) {
        $("serr-train").textContent = `not valid JSON: ${error.message}`;
        form.train.classList.add("invalid");
        return;
      }
    }
    const answer = await api("POST", "/v1/jobs", body, { "X-API-Key": form.api_key.value });
    if (!answer.ok) {
      // train.* and evaluate.* errors go beside the training options.
      showProblem("serr-", answer.data, (field) => (field.split(".")[0] === "evaluate" ? `train.${field.slice(9)}` : field));
      $("submit-status").textContent = `${answer.status} ${answer.data.title}`;
      return;
    }
    $("submit-status").replaceChildren("Queued ", el("a", { href: `/jobs/${answer.data.id}` }, `job #${answer.data.id}`), ".");
    if (reload) reload();
  });
}

function jobsPage() {
  const detail = $("job-detail");
  let reload = null;
  if (detail) jobDetail(detail);
  else reload = jobsList();
  submitForm(reload);
}

// --- Training results ---------------------------------------------------------------------

async function trainingPage() {
  const form = $("training-form");
  const total = await jobTotal("", "train");
  const list = await api("GET", `/v1/jobs?${query({ kind: "train", limit: 500, offset: Math.max(0, total - 500) })}`);
  const jobs = list.ok ? list.data.items.slice().reverse() : [];
  for (const select of [form.a, form.b]) {
    for (const job of jobs) select.append(el("option", { value: job.id }, `#${job.id} ${specLabel(job.spec)} (${job.status})`));
  }
  const empty = $("training-empty");
  if (!jobs.length) {
    empty.hidden = false;
    empty.textContent = "No training jobs yet: submit one with kind 'train' on the Jobs page (or phymem train --submit), and its BER curve and loss appear here.";
    return;
  }
  const params = new URLSearchParams(location.search);
  const finished = jobs.find((job) => job.status === "succeeded");
  form.a.value = params.get("job") || (finished || jobs[0]).id;
  if (params.get("overlay")) form.b.value = params.get("overlay");

  const load = async () => {
    const ids = [...new Set([form.a.value, form.b.value].filter(Boolean))];
    history.replaceState(null, "", `?${query({ job: form.a.value, overlay: form.b.value })}`);
    const results = await Promise.all(ids.map(async (id) => {
      const [ber, lossHistory] = await Promise.all([api("GET", `/v1/jobs/${id}/ber`), api("GET", `/v1/jobs/${id}/history`)]);
      return { id, ber: ber.ok ? ber.data.rows : [], loss: lossHistory.ok ? lossHistory.data.loss : [], problem: ber.ok ? null : ber.data };
    }));
    const missing = results.filter((r) => !r.ber.length);
    empty.hidden = !missing.length;
    empty.textContent = missing.map((r) => `Job #${r.id} has no BER results yet${r.problem && r.problem.detail ? " (" + r.problem.detail + ")" : ""}: they appear when its evaluate phase finishes.`).join(" ");
    $("training-content").hidden = results.every((r) => !r.ber.length && !r.loss.length);

    const traces = [];
    let colour = 0;
    const dashes = ["solid", "dash"];
    results.forEach((result, index) => {
      const detectors = [...new Set(result.ber.map((row) => row.detector))];
      for (const detector of detectors) {
        const rows = result.ber.filter((row) => row.detector === detector).sort((a, b) => a.ebn0_db - b.ebn0_db);
        traces.push({
          type: "scatter", mode: "lines+markers", name: `#${result.id} ${detector}`,
          x: rows.map((r) => r.ebn0_db), y: rows.map((r) => r.ber),
          error_y: { type: "data", symmetric: false, array: rows.map((r) => r.ci_high - r.ber), arrayminus: rows.map((r) => r.ber - r.ci_low) },
          line: { color: COLOURS[colour++ % COLOURS.length], dash: dashes[index % 2] }, marker: { symbol: ["circle", "square", "diamond", "triangle-up", "x"][colour % 5] },
        });
      }
    });
    plot("ber-chart", traces, { xaxis: { title: { text: "Eb/N0 (dB)" } }, yaxis: { title: { text: "bit error rate" }, type: "log", exponentformat: "power" } });
    plot("loss-chart", results.map((r, i) => ({ type: "scatter", mode: "lines", name: `#${r.id} loss`, x: r.loss.map((p) => p.step), y: r.loss.map((p) => p.loss), line: { color: COLOURS[i], dash: dashes[i % 2] } })),
      { xaxis: { title: { text: "step" } }, yaxis: { title: { text: "loss" } } });
    fill($("ber-table").tBodies[0], results.flatMap((r) => r.ber.map((row) => el("tr", {},
      el("td", {}, `#${r.id}`), el("td", {}, row.detector), el("td", { class: "num" }, row.ebn0_db), el("td", { class: "num" }, Number(row.ber).toExponential(3)),
      el("td", { class: "num" }, Number(row.ci_low).toExponential(3)), el("td", { class: "num" }, Number(row.ci_high).toExponential(3)),
      el("td", { class: "num" }, row.bit_errors), el("td", { class: "num" }, row.bits)))));
    fill($("loss-table").tBodies[0], results.flatMap((r) => r.loss.map((p) => el("tr", {}, el("td", {}, `#${r.id}`), el("td", { class: "num" }, p.step), el("td", { class: "num" }, Number(p.loss).toPrecision(5))))));
  };
  form.addEventListener("change", load);
  await load();
}

const PAGES = { overview: overviewPage, estimate: estimatePage, measured: measuredPage, jobs: jobsPage, training: trainingPage };
const start = PAGES[document.body.dataset.page];
if (start) start();

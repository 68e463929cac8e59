// ferroserve dashboard: one page, no framework, no build step. Every call goes to the server's
// public routes (the same any client calls), with the key or token the user signs in with
// (kept in this tab's sessionStorage only), so the key's scopes decide what the page can do.
'use strict';

const ROOT = new URL('../', location.href.split('#')[0]);
const KEY = 'ferroserve.key';
const MAX_CSV_BYTES = 20 * 1024 * 1024;
const PANELS = ['models', 'live', 'try', 'predictions', 'jobs'];

const $ = (sel, el = document) => el.querySelector(sel);

// An element: h('td', {class: 'num', text: '3'}, child, ...). Attributes starting with `on`
// are listeners; `text` sets the text; null and false children are skipped.
function h(tag, attrs, ...children) {
  const svg = ['svg', 'path', 'line', 'text', 'rect', 'g', 'title', 'polyline'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (typeof x !== 'number') return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e6) return (x / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (x / 1e3).toFixed(1) + 'k';
  if (a >= 100) return x.toFixed(0);
  return Number(x.toPrecision(digits)).toString();
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 1) return '<1 s';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function localTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
}

function localDateTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString([], { hour12: false });
}

// ---------------------------------------------------------------------------------------------
// Talking to the server.

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Calls a route (a path relative to the server's root, no leading slash); answers the parsed
// JSON, or the Response with `raw`. A refusal throws ApiError with the server's message.
async function api(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
  const hd = new Headers({ ...authHeaders(), ...headers });
  if (body !== undefined && !(body instanceof FormData) && typeof body !== 'string' && !(body instanceof Blob)) {
    hd.set('Content-Type', 'application/json');
    body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(new URL(path, ROOT), { method, headers: hd, body, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(`the server did not answer (${e.message})`, 0);
  }
  if (raw && r.ok) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const msg = data && typeof data === 'object' && data.error ? data.error : `${r.status} ${r.statusText}`;
    throw new ApiError(msg, r.status);
  }
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// Shared state: the caller, the models (index, cards, metadata, config), the chosen model.

const state = {
  caller: null,
  index: [],          // POST /v2/repository/index
  cards: new Map(),   // name -> GET /models card
  details: new Map(), // "name@version" -> { metadata, config } of a ready version
  model: null,        // the model chosen in any panel
  panel: null,
  stops: [],          // what stops the current panel's polling
};

function banner(msg) {
  const b = $('#banner');
  if (!msg) { b.hidden = true; b.textContent = ''; return; }
  b.hidden = false;
  b.textContent = msg;
}

function explain(e) {
  if (e.status === 401) return `${e.message}. This server checks keys: sign in above with an API key or token.`;
  if (e.status === 403) return `${e.message}.`;
  return e.message;
}

let toastTimer;
function toast(msg, bad = false) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = `toast show${bad ? ' bad' : ''}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, 4000);
}

async function loadCaller() {
  try {
    state.caller = await api('v2/caller');
  } catch (e) {
    state.caller = null;
    toast(e.status === 401 ? `${e.message}: the key is forgotten` : explain(e), true);
    if (e.status === 401 && sessionStorage.getItem(KEY)) {
      // A wrong or expired key: forget it, and show what is open without one.
      sessionStorage.removeItem(KEY);
      state.caller = await api('v2/caller').catch(() => null);
    }
  }
  const c = state.caller;
  const who = $('#who');
  const signedIn = !!sessionStorage.getItem(KEY) && c && c.authenticated;
  $('#signout-button').hidden = !signedIn;
  $('#signin-button').hidden = signedIn;
  $('#key').hidden = signedIn;
  if (!c) who.textContent = '';
  else if (!c.auth) { who.textContent = 'no keys on this server'; $('#signin').classList.add('off'); $('#key').hidden = true; $('#signin-button').hidden = true; }
  else if (c.authenticated) who.textContent = `signed in as ${c.name} (${c.scopes.join(', ') || 'no scope'}${c.models ? `; models ${c.models.join(', ')}` : ''})`;
  else who.textContent = c.open.length ? `not signed in (open: ${c.open.join(', ')})` : 'not signed in';
}

// The model set: the repository index, the friendly cards, and each ready model's metadata and
// configuration (for the Models panel).
async function loadModels({ details = false } = {}) {
  const [index, cards] = await Promise.all([
    api('v2/repository/index', { method: 'POST', body: {} }),
    api('models').catch(() => []),
  ]);
  state.index = index;
  state.cards = new Map(cards.map((c) => [c.name, c]));
  if (details) {
    // Each ready version's metadata and configuration, fetched once (a version's files do not
    // change under it: a reload makes it load again, and the index says LOADING meanwhile).
    const ready = index.filter((m) => m.state === 'READY');
    const want = new Set(ready.map((m) => `${m.name}@${m.version}`));
    for (const k of [...state.details.keys()]) if (!want.has(k)) state.details.delete(k);
    const missing = ready.filter((m) => !state.details.has(`${m.name}@${m.version}`));
    const fetched = await mapLimit(missing, 6, async (m) => {
      const v = `versions/${enc(m.version)}`;
      const [metadata, config] = await Promise.all([
        api(`v2/models/${enc(m.name)}/${v}`).catch(() => null),
        api(`v2/models/${enc(m.name)}/${v}/config`).catch(() => null),
      ]);
      return [`${m.name}@${m.version}`, { metadata, config }];
    });
    for (const [k, d] of fetched) if (d.metadata) state.details.set(k, d);
  }
  fillModelSelects();
}

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function readyModels() {
  return [...new Set(state.index.filter((m) => m.state === 'READY').map((m) => m.name))];
}

// Models the friendly routes serve (one table of features): Try it, Predictions, Jobs.
function tabularModels() {
  return readyModels().filter((n) => state.cards.get(n) && state.cards.get(n).features);
}

function fillModelSelects() {
  const fill = (sel, names) => {
    const el = $(sel);
    const keep = state.model && names.includes(state.model) ? state.model : (names.includes(el.value) ? el.value : names[0]);
    el.replaceChildren(...names.map((n) => h('option', { value: n, text: n })));
    if (keep) el.value = keep;
  };
  fill('#live-model', readyModels());
  fill('#try-model', tabularModels());
  // Records outlive a model's unloading: every model of the repository.
  fill('#pred-model', [...new Set(state.index.map((m) => m.name))]);
  fill('#job-model', tabularModels());
}

function chooseModel(name) {
  state.model = name;
}

// `fn` made to run one call at a time: a call while one runs waits for it and runs once after.
function serial(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        do { again = false; await fn(); } while (again);
      } finally { running = null; }
    })();
    return running;
  };
  return run;
}

// Polls `fn` every `ms` while the panel is shown (not while the tab is hidden), one call at a
// time; errors go to the banner.
function poll(fn, ms) {
  let stopped = false;
  let timer;
  const run = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { banner(explain(e)); }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  state.stops.push(() => { stopped = true; clearTimeout(timer); });
}

// ---------------------------------------------------------------------------------------------
// Models.

function tensors(list) {
  return (list || []).map((t) => `${t.name} ${t.datatype} [${t.shape.join(', ')}]`).join('; ');
}

function batching(config) {
  if (!config) return '–';
  const parts = [`up to ${config.max_batch_size} rows a batch`];
  const db = config.dynamic_batching;
  if (db) {
    parts.push(db.max_queue_delay_microseconds ? `waits up to ${db.max_queue_delay_microseconds} µs to fill one` : 'no wait to fill one');
    if (db.preferred_batch_size && db.preferred_batch_size.length) parts.push(`preferred ${db.preferred_batch_size.join(', ')}`);
    if (db.default_queue_policy) parts.push(`queue of ${db.default_queue_policy.max_queue_size}`);
  }
  const inst = (config.instance_group || []).reduce((n, g) => n + (g.count || 0), 0);
  if (inst) parts.push(`${inst} instance${inst > 1 ? 's' : ''}`);
  return parts.join(', ');
}

async function control(name, action, button) {
  button.disabled = true;
  const label = button.textContent;
  button.textContent = `${action === 'unload' ? 'Unloading' : 'Loading'}…`;
  try {
    await api(`v2/repository/models/${enc(name)}/${action}`, { method: 'POST', body: {} });
    for (const k of [...state.details.keys()]) if (k.startsWith(`${name}@`)) state.details.delete(k);
    toast(`${name}: ${action === 'unload' ? 'unloaded' : 'loaded'}`);
  } catch (e) {
    toast(`${name}: ${explain(e)}`, true);
  } finally {
    button.disabled = false;
    button.textContent = label;
    await renderModels();
  }
}

// A button that asks for a second press before it acts (unload).
function confirmButton(text, confirmText, act) {
  let armed = false;
  let timer;
  const b = h('button', {
    type: 'button', class: 'danger', text,
    onclick: () => {
      if (!armed) {
        armed = true;
        b.textContent = confirmText;
        timer = setTimeout(() => { armed = false; b.textContent = text; }, 4000);
        return;
      }
      clearTimeout(timer);
      armed = false;
      b.textContent = text;
      act(b);
    },
  });
  return b;
}

const renderModels = serial(async () => {
  try {
    await loadModels({ details: true });
    banner(null);
  } catch (e) {
    banner(explain(e));
    return;
  }
  const c = state.caller;
  const may = !!(c && c.may_load);
  const note = $('#models-control');
  if (!c) note.textContent = '';
  else if (may) note.textContent = `Model control: ${c.model_control}. Load, reload and unload act on the server at once.`;
  else if (c.model_control !== 'explicit') note.textContent = `Model control: ${c.model_control}. Load and unload need the server started with --model-control-mode explicit.`;
  else note.textContent = 'Load and unload need a key with the manage scope.';

  const byName = new Map();
  for (const v of state.index) {
    if (!byName.has(v.name)) byName.set(v.name, []);
    byName.get(v.name).push(v);
  }
  const list = $('#models-list');
  const cards = [];
  for (const [name, versions] of byName) {
    const card = state.cards.get(name) || {};
    const readyVersions = versions.filter((v) => v.state === 'READY').map((v) => v.version).sort((a, b) => Number(b) - Number(a));
    const det = (readyVersions.length && state.details.get(`${name}@${readyVersions[0]}`)) || {};
    const md = det.metadata;
    const cfg = det.config;
    const ready = versions.some((v) => v.state === 'READY');
    const reasons = versions.filter((v) => v.reason).map((v) => `${v.version ? `version ${v.version}: ` : ''}${v.reason}`);
    const actions = [];
    if (may) {
      if (ready) {
        actions.push(h('button', { type: 'button', text: 'Reload', 'aria-label': `Reload ${name}`, onclick: (ev) => control(name, 'load', ev.currentTarget) }));
        const u = confirmButton('Unload', 'Press again to unload', (b) => control(name, 'unload', b));
        u.setAttribute('aria-label', `Unload ${name}`);
        actions.push(u);
      } else {
        actions.push(h('button', { type: 'button', class: 'primary', text: 'Load', 'aria-label': `Load ${name}`, onclick: (ev) => control(name, 'load', ev.currentTarget) }));
      }
    }
    const links = ready && card.features ? [
      h('a', { href: `#/live/${enc(name)}`, text: 'Live' }),
      h('a', { href: `#/try/${enc(name)}`, text: 'Try it' }),
      h('a', { href: `#/predictions/${enc(name)}`, text: 'Predictions' }),
    ] : ready ? [h('a', { href: `#/live/${enc(name)}`, text: 'Live' })] : [];
    const features = card.features || [];
    cards.push(h('article', { class: 'card', 'data-model': name, 'aria-labelledby': `m-${name}` },
      h('div', { class: 'card-head' },
        h('h2', { id: `m-${name}`, text: name }),
        h('span', {}, ...versions.map((v) => h('span', { class: `state ${v.state}`, 'data-state': v.state, text: `${v.version ? `v${v.version} ` : ''}${v.state}` })))),
      card.description ? h('p', { class: 'muted', text: card.description }) : null,
      reasons.length ? h('p', { class: 'reason', role: 'note', text: reasons.join(' · ') }) : null,
      !(md || cfg || card.task) ? null : h('dl', {},
        h('dt', { text: 'Backend' }), h('dd', { text: cfg ? `${cfg.backend}${cfg.platform && cfg.platform !== cfg.backend ? ` (${cfg.platform})` : ''}` : (md ? md.platform : '–') }),
        h('dt', { text: 'Task' }), h('dd', { text: card.task ? `${card.task}${card.classes ? ` of ${card.classes.length} classes: ${card.classes.join(', ')}` : ''}` : (card.friendly ? 'custom tensors' : '–') }),
        h('dt', { text: 'Inputs' }), h('dd', { text: md ? tensors(md.inputs) : '–' }),
        h('dt', { text: 'Outputs' }), h('dd', { text: md ? tensors(md.outputs) : '–' }),
        features.length ? [h('dt', { text: 'Features' }), h('dd', { title: features.join(', '), text: features.length > 6 ? `${features.slice(0, 6).join(', ')} … (${features.length})` : features.join(', ') })] : null,
        h('dt', { text: 'Batching' }), h('dd', { text: batching(cfg) })),
      h('div', { class: 'actions' }, ...actions, ...links)));
  }
  if (!cards.length) cards.push(h('p', { class: 'muted', text: 'No model in the repository.' }));
  list.replaceChildren(...cards);
});

// ---------------------------------------------------------------------------------------------
// Live: the overview from the statistics, the charts from the history route.

let lastStats = null;
let liveAll = false;
const OVERVIEW_ROWS = 15;

async function liveOverview() {
  const now = performance.now();
  const stats = await api('v2/models/stats');
  const rows = [];
  for (const m of stats.model_stats || []) {
    const key = `${m.name}\u0000${m.version}`;
    const s = m.inference_stats;
    const req = s.success.count + s.fail.count;
    const prev = lastStats && lastStats.map.get(key);
    const dt = lastStats ? (now - lastStats.at) / 1000 : 0;
    let rps = null, eps = null, mean = null;
    if (prev && dt > 0) {
      rps = (req - prev.req) / dt;
      eps = (s.fail.count - prev.fail) / dt;
      const dn = s.success.count - prev.ok;
      mean = dn > 0 ? (s.success.ns - prev.ns) / dn / 1e6 : null;
    }
    rows.push({ key, name: m.name, version: m.version, req, ok: s.success.count, fail: s.fail.count, ns: s.success.ns, rps, eps, mean });
  }
  lastStats = { at: now, map: new Map(rows.map((r) => [r.key, r])) };
  // The busiest first; the first 15 unless every model is asked for.
  rows.sort((a, b) => (b.rps || 0) - (a.rps || 0) || b.req - a.req || a.name.localeCompare(b.name));
  const all = $('#live-all');
  all.hidden = rows.length <= OVERVIEW_ROWS;
  all.textContent = liveAll ? `Show the busiest ${OVERVIEW_ROWS}` : `Show all ${rows.length} versions`;
  const tbody = $('#live-overview tbody');
  tbody.replaceChildren(...rows.slice(0, liveAll ? rows.length : OVERVIEW_ROWS).map((r) => h('tr', { class: r.name === state.model ? 'selected' : null, 'data-model': r.name },
    h('th', { scope: 'row' }, h('a', { href: `#/live/${enc(r.name)}`, text: r.name })),
    h('td', { text: r.version }),
    h('td', { class: 'num', text: fmt(r.rps) }),
    h('td', { class: 'num', text: fmt(r.eps) }),
    h('td', { class: 'num', text: r.mean === null ? '–' : `${fmt(r.mean)} ms` }),
    h('td', { class: 'num', text: r.req.toLocaleString() }))));
}

// A line chart of `series` ([{name, values}]) over the times `t` (seconds), the last `window`
// seconds; a gap where a value is null.
// The plot area (an SVG drawn in `W` x `H` units and stretched to its box) with its axis labels
// as text beside it, which stretching would distort.
function framed(svg, max, window) {
  return [h('div', { class: 'plot' },
    h('div', { class: 'yaxis', 'aria-hidden': 'true' }, h('span', { text: fmt(max) }), h('span', { text: '0' })),
    svg),
  h('div', { class: 'xaxis', 'aria-hidden': 'true' }, h('span', { text: `−${fmtSeconds(window)}` }), h('span', { text: 'now' }))];
}

function lineChart({ id, title, unit, series, t, window, step }) {
  const W = 400, H = 140, L = 0, R = 0, T = 3, B = 1;
  const end = t.length ? t[t.length - 1] + step : Math.floor(Date.now() / 1000);
  const start = end - window;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  let max = all.length ? Math.max(...all) : 0;
  max = niceMax(max);
  const x = (ts) => L + ((ts - start) / window) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const paths = series.map((s, si) => {
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v) || t[i] < start) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(t[i] + step / 2).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return h('path', { d: d || 'M0,0', fill: 'none', stroke: `var(--c${si % 8})`, 'stroke-width': 1.8, 'stroke-linejoin': 'round', 'vector-effect': 'non-scaling-stroke' });
  });
  const last = series.map((s) => {
    for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) return s.values[i];
    return null;
  });
  const now = last[0];
  const summary = `${title}: now ${series.map((s, i) => `${s.name} ${fmt(last[i])}${unit}`).join(', ')}; highest ${fmt(Math.max(0, ...all))}${unit} over the last ${fmtSeconds(window)}`;
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, preserveAspectRatio: 'none' },
    h('title', { text: summary }),
    h('line', { class: 'axis', x1: L, y1: y(0), x2: W - R, y2: y(0), 'vector-effect': 'non-scaling-stroke' }),
    h('line', { class: 'axis', x1: L, y1: T, x2: W - R, y2: T, 'stroke-dasharray': '3 4', 'vector-effect': 'non-scaling-stroke' }),
    ...paths);
  return h('figure', { class: 'chart', id, 'data-now': now === null ? '' : String(now) },
    h('div', { class: 'chart-head' },
      h('h3', { text: title }),
      h('span', { class: 'chart-now', 'aria-hidden': 'true', text: series.length > 1
        ? series.map((s, i) => `${s.name} ${fmt(last[i])}`).join(' · ') + unit
        : (now === null ? '–' : `${fmt(now)}${unit}`) })),
    ...framed(svg, max, window),
    series.length > 1 ? h('ul', { class: 'legend', 'aria-hidden': 'true' }, ...series.map((s, i) => h('li', {}, h('span', { class: `swatch s${i % 8}` }), s.name))) : null);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const liveCharts = serial(async () => {
  const model = $('#live-model').value;
  if (!model) { $('#live-note').textContent = 'No model is ready.'; $('#live-charts').replaceChildren(); return; }
  const win = Number($('#live-window').value);
  const route = `v2/models/${enc(model)}/history?seconds=${win}`;
  $('#live-route').textContent = `GET /${route}`;
  const hist = await api(route);
  const vsel = $('#live-version');
  const versions = hist.versions.map((v) => v.version);
  const chosen = vsel.value;
  vsel.replaceChildren(h('option', { value: '', text: 'latest with traffic' }), ...versions.map((v) => h('option', { value: v, text: `version ${v}` })));
  if (versions.includes(chosen)) vsel.value = chosen;
  const track = chosen && versions.includes(chosen)
    ? hist.versions.find((v) => v.version === chosen)
    : hist.versions.slice().sort((a, b) => Number(b.version) - Number(a.version))[0];
  banner(null);
  if (!track) {
    $('#live-note').textContent = `No traffic to ${model} yet: the server starts a model's history at its first request.`;
    $('#live-charts').replaceChildren();
    return;
  }
  $('#live-note').textContent = `${model} version ${track.version}, one point every ${hist.step_seconds} s.`;
  const s = track.samples;
  const t = s.map((x) => x.t);
  const per = (f) => s.map((x) => (x.seconds > 0 ? f(x) / x.seconds : null));
  const step = hist.step_seconds;
  const common = { t, window: win, step };
  $('#live-charts').replaceChildren(
    lineChart({ ...common, id: 'chart-requests', title: 'Requests/s', unit: '', series: [{ name: 'requests', values: per((x) => x.requests) }] }),
    lineChart({ ...common, id: 'chart-latency', title: 'Latency', unit: ' ms', series: [
      { name: 'p50', values: s.map((x) => x.p50_ms) }, { name: 'p95', values: s.map((x) => x.p95_ms) }, { name: 'p99', values: s.map((x) => x.p99_ms) }] }),
    lineChart({ ...common, id: 'chart-errors', title: 'Errors/s', unit: '', series: [{ name: 'errors', values: per((x) => x.errors) }] }),
    lineChart({ ...common, id: 'chart-rows', title: 'Rows/s', unit: '', series: [{ name: 'rows', values: per((x) => x.rows) }] }),
    lineChart({ ...common, id: 'chart-batch', title: 'Batch size', unit: ' rows', series: [{ name: 'rows a batch', values: s.map((x) => (x.batches ? x.batch_rows : null)) }] }),
    lineChart({ ...common, id: 'chart-queue', title: 'Queue depth', unit: '', series: [{ name: 'queued', values: s.map((x) => x.queue_depth) }] }));
});

// ---------------------------------------------------------------------------------------------
// Try it.

function currentCard(sel) {
  return state.cards.get($(sel).value);
}

function renderTryForm() {
  const card = currentCard('#try-model');
  const fields = $('#try-fields');
  const samples = $('#try-samples');
  $('#try-types').textContent = '';
  $('#try-answer').replaceChildren(h('p', { class: 'muted', text: 'Fill in the features and press Predict.' }));
  $('#try-csv-result').replaceChildren();
  if (!card) {
    fields.replaceChildren(h('p', { class: 'muted', text: 'No model here reads a table of features.' }));
    samples.replaceChildren();
    $('#try-description').textContent = '';
    return;
  }
  chooseModel(card.name);
  $('#try-description').textContent = card.description || '';
  api(`v2/models/${enc(card.name)}`).then((md) => {
    const i = md.inputs && md.inputs[0];
    if (i && $('#try-model').value === card.name) {
      $('#try-types').textContent = `${card.features.length} features, read as ${i.datatype} (input '${i.name}'); an empty field is a missing value (NaN).`;
    }
  }).catch(() => {});
  fields.replaceChildren(...card.features.map((f, i) => h('label', {},
    f, h('input', { name: f, 'data-feature': i, inputmode: 'decimal', autocomplete: 'off', placeholder: 'missing' }))));
  const rows = card.sample_rows || [];
  samples.replaceChildren(...(rows.length ? [h('span', { class: 'muted', text: 'Samples:' })] : []),
    ...rows.slice(0, 8).map((r, i) => h('button', { type: 'button', text: `${i + 1}`, 'aria-label': `Fill in sample row ${i + 1}`, onclick: () => fillRow(r) })));
  if (rows.length) fillRow(rows[0]);
  updateCurl();
}

function fillRow(row) {
  const inputs = [...$('#try-fields').querySelectorAll('input')];
  inputs.forEach((el, i) => { el.value = row[i] === null || row[i] === undefined ? '' : String(row[i]); el.removeAttribute('aria-invalid'); });
  updateCurl();
}

// The record the form holds (feature -> number, null where empty), or the fields in error.
function tryRecord() {
  const rec = {};
  const bad = [];
  for (const el of $('#try-fields').querySelectorAll('input')) {
    const v = el.value.trim();
    if (v === '') { rec[el.name] = null; el.removeAttribute('aria-invalid'); continue; }
    const n = Number(v);
    if (!Number.isFinite(n)) { bad.push(el); el.setAttribute('aria-invalid', 'true'); continue; }
    el.removeAttribute('aria-invalid');
    rec[el.name] = n;
  }
  return { rec, bad };
}

function predictPath(card, extra = '') {
  const q = card.task === 'classification' ? '?probabilities=true' : '';
  return `models/${enc(card.name)}/predict${q}${extra}`;
}

function shellQuote(s) {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function updateCurl() {
  const card = currentCard('#try-model');
  if (!card) { $('#try-curl').textContent = ''; return; }
  const { rec } = tryRecord();
  const auth = sessionStorage.getItem(KEY) ? ' \\\n  -H "Authorization: Bearer $FERROSERVE_API_KEY"' : '';
  $('#try-curl').textContent = `curl -X POST ${shellQuote(new URL(predictPath(card), ROOT).href)} \\\n  -H 'Content-Type: application/json'${auth} \\\n  -d ${shellQuote(JSON.stringify([rec]))}`;
}

function answerView(card, label, probs) {
  const out = [h('p', { class: 'muted', text: card.task === 'classification' ? 'Predicted class' : 'Predicted value' }),
    h('p', { class: 'answer-label', id: 'try-label', text: typeof label === 'number' ? fmt(label, 6) : JSON.stringify(label).replace(/^"|"$/g, '') })];
  if (probs && card.classes) {
    out.push(h('table', { class: 'data', id: 'try-probabilities' },
      h('caption', { text: 'Probabilities' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Class' }), h('th', { scope: 'col', class: 'wide', text: 'Probability' }), h('th', { scope: 'col', class: 'num', text: '' }))),
      h('tbody', {}, ...card.classes.map((c, i) => {
        const bar = h('span');
        bar.style.width = `${Math.max(0, Math.min(1, probs[i])) * 100}%`;
        return h('tr', { 'data-class': c },
          h('th', { scope: 'row', text: c }),
          h('td', {}, h('div', { class: 'bar', 'aria-hidden': 'true' }, bar)),
          h('td', { class: 'num', text: fmt(probs[i], 4) }));
      }))));
  }
  return out;
}

async function tryPredict(ev) {
  ev.preventDefault();
  const card = currentCard('#try-model');
  if (!card) return;
  const { rec, bad } = tryRecord();
  const box = $('#try-answer');
  if (bad.length) {
    box.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: `Not a number: ${bad.map((el) => el.name).join(', ')}. Leave a field empty for a missing value.` }));
    bad[0].focus();
    return;
  }
  updateCurl();
  try {
    const answer = await api(predictPath(card), { method: 'POST', body: [rec] });
    box.replaceChildren(...answerView(card, answer.predictions[0], answer.probabilities && answer.probabilities[0]),
      h('details', {}, h('summary', { text: 'The answer as JSON' }), h('pre', { class: 'code', id: 'try-raw', text: JSON.stringify(answer) })));
  } catch (e) {
    box.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: explain(e) }));
  }
}

async function copyCurl() {
  updateCurl();
  const text = $('#try-curl').textContent;
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied the request as curl');
  } catch {
    // No clipboard API (a page not served over HTTPS or loopback): select the text instead.
    const pre = $('#try-curl');
    pre.closest('details').open = true;
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    toast('Selected the request: copy it with Ctrl+C');
  }
}

// A small CSV reader for showing the uploaded rows beside their predictions (quoted fields
// with commas and doubled quotes; the server reads the file itself).
function parseCsv(text, limit) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length && rows.length < limit; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = '';
      if (row.some((f) => f.trim() !== '')) rows.push(row);
      row = [];
    } else field += ch;
  }
  if ((field !== '' || row.length) && rows.length < limit) { row.push(field); if (row.some((f) => f.trim() !== '')) rows.push(row); }
  return rows;
}

async function tryCsv() {
  const card = currentCard('#try-model');
  const file = $('#try-csv').files[0];
  const out = $('#try-csv-result');
  if (!card || !file) return;
  if (file.size > MAX_CSV_BYTES) {
    out.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: `${file.name} is ${fmt(file.size / 1048576)} MB: the page sends at most ${MAX_CSV_BYTES / 1048576} MB. Submit it as a batch job instead.` }));
    return;
  }
  out.replaceChildren(h('p', { class: 'muted', text: `Predicting ${file.name}…` }));
  const text = await file.text();
  let answer;
  try {
    answer = await api(predictPath(card), { method: 'POST', body: text, headers: { 'Content-Type': 'text/csv', Accept: 'application/json' } });
  } catch (e) {
    out.replaceChildren(h('p', { class: 'error-text', role: 'alert', text: explain(e) }));
    return;
  }
  const SHOW = 500;
  let rows = parseCsv(text, SHOW + 1);
  const header = rows.length && rows[0].some((f) => f.trim() !== '' && !Number.isFinite(Number(f))) ? rows.shift() : card.features;
  rows = rows.slice(0, SHOW);
  const preds = answer.predictions;
  const probs = answer.probabilities;
  const cols = header.slice(0, 8);
  const table = h('table', { class: 'data', id: 'try-csv-table' },
    h('caption', { text: `${preds.length} rows predicted${preds.length > SHOW ? `; the first ${SHOW} shown` : ''}` }),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'num', text: 'Row' }), ...cols.map((c) => h('th', { scope: 'col', text: c })),
      header.length > cols.length ? h('th', { scope: 'col', text: '…' }) : null,
      h('th', { scope: 'col', text: 'Prediction' }), probs ? h('th', { scope: 'col', class: 'num', text: 'Probability' }) : null)),
    h('tbody', {}, ...preds.slice(0, SHOW).map((p, i) => h('tr', {},
      h('td', { class: 'num', text: i }),
      ...cols.map((_, j) => h('td', { text: rows[i] ? rows[i][j] : '' })),
      header.length > cols.length ? h('td', { text: '…' }) : null,
      h('td', { class: 'prediction', text: typeof p === 'number' ? fmt(p, 6) : String(p) }),
      probs ? h('td', { class: 'num', text: fmt(Math.max(...probs[i]), 4) }) : null))));
  const download = h('button', {
    type: 'button', text: 'Download predictions (CSV)',
    onclick: () => {
      const head = ['row', 'prediction', ...(probs && card.classes ? card.classes.map((c) => `probability_${c}`) : [])];
      const lines = [head.join(',')].concat(preds.map((p, i) => [i, csvCell(p), ...(probs ? probs[i] : [])].join(',')));
      saveBlob(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }), `${card.name}-predictions.csv`);
    },
  });
  out.replaceChildren(h('div', { class: 'actions' }, download), h('div', { class: 'table-wrap' }, table));
}

function csvCell(v) {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------------------------------------
// Predictions: the model's records in a window, followed as new ones arrive.

const predState = { key: '', records: [], seen: new Set(), since: 0, truncated: false };
const PRED_PAGES = 20;
const PRED_SHOW = 50;
let predShown = PRED_SHOW;

function predQuery() {
  const model = $('#pred-model').value;
  const window = Number($('#pred-window').value);
  const outcome = $('#pred-outcome').value;
  const version = $('#pred-version').value.trim();
  return { model, window, outcome, version, key: `${model}|${window}|${outcome}|${version}` };
}

function recordKey(r) {
  return `${r.id}|${r.time}|${r.route}|${r.status}`;
}

async function fetchRecords(q, since) {
  let cursor = null;
  const out = [];
  for (let page = 0; page < PRED_PAGES; page++) {
    const params = new URLSearchParams({ since: String(since), limit: '1000' });
    if (q.outcome) params.set('outcome', q.outcome);
    if (q.version) params.set('version', q.version);
    if (cursor) params.set('cursor', cursor);
    const ans = await api(`v2/models/${enc(q.model)}/predictions?${params}`);
    out.push(...ans.records);
    cursor = ans.next;
    if (!cursor) return { records: out, truncated: false };
  }
  return { records: out, truncated: true };
}

const predictionsTick = serial(async () => {
  const q = predQuery();
  if (!q.model) return;
  const fresh = q.key !== predState.key;
  if (fresh) {
    predShown = PRED_SHOW;
    Object.assign(predState, { key: q.key, records: [], seen: new Set(), since: Date.now() - q.window * 1000, truncated: false });
  }
  let got;
  try {
    got = await fetchRecords(q, predState.since);
  } catch (e) {
    if (e.status === 404) {
      $('#pred-note').textContent = e.message;
      $('#pred-histogram').replaceChildren();
      $('#pred-table tbody').replaceChildren();
      banner(null);
      return;
    }
    throw e;
  }
  banner(null);
  for (const r of got.records) {
    const k = recordKey(r);
    if (predState.seen.has(k)) continue;
    predState.seen.add(k);
    predState.records.push(r);
  }
  predState.truncated = predState.truncated || got.truncated;
  // Keep the window: drop what has fallen out of it, and follow from the newest record.
  const from = Date.now() - q.window * 1000;
  predState.records = predState.records.filter((r) => Date.parse(r.time) >= from);
  if (predState.records.length) predState.since = Date.parse(predState.records[predState.records.length - 1].time);
  renderPredictions(q);
});

// The predicted values of a record: its first output's data, one per row.
function predicted(r) {
  const o = r.outputs && r.outputs[0];
  if (!o || !Array.isArray(o.data)) return [];
  const rows = o.shape && o.shape.length ? o.shape[0] : o.data.length;
  const per = rows > 0 ? Math.max(1, Math.floor(o.data.length / rows)) : 1;
  const vals = [];
  for (let i = 0; i < rows && i * per < o.data.length; i++) vals.push(o.data[i * per]);
  return vals;
}

function renderPredictions(q) {
  const card = state.cards.get(q.model) || {};
  const search = $('#pred-search').value.trim().toLowerCase();
  const recs = search
    ? predState.records.filter((r) => `${r.id} ${r.route} ${r.protocol} ${r.status} ${r.error || ''} ${predicted(r).join(' ')}`.toLowerCase().includes(search))
    : predState.records;
  const ok = recs.filter((r) => r.status === 200).length;
  $('#pred-note').textContent = `${recs.length} records in the last ${fmtSeconds(q.window)} (${ok} answered, ${recs.length - ok} refused or failed)${predState.truncated ? `; only the first ${PRED_PAGES * 1000} were read: narrow the window` : ''}.`;
  $('#pred-histogram').replaceChildren(...histogram(recs, q.window, card));
  const newest = recs.slice(-predShown).reverse();
  $('#pred-table tbody').replaceChildren(...newest.map((r) => {
    const p = predicted(r);
    return h('tr', { 'data-id': r.id },
      h('td', { text: localTime(r.time), title: r.time }),
      h('td', { text: r.id }),
      h('td', { text: r.version }),
      h('td', { text: r.protocol, title: r.route }),
      h('td', {}, h('span', { class: `state ${r.status === 200 ? 'READY' : 'UNAVAILABLE'}`, text: r.status }), r.error ? h('div', { class: 'error-text', title: r.error, text: r.error.length > 90 ? `${r.error.slice(0, 90)}…` : r.error }) : null),
      h('td', { class: 'num', text: r.rows }),
      h('td', { class: 'num', text: `${fmt(r.latency_us / 1000)} ms` }),
      h('td', { class: 'prediction', text: r.outputs === null && r.status === 200 ? '(not recorded)' : p.slice(0, 3).map((v) => (typeof v === 'number' ? fmt(v, 5) : v)).join(', ') + (p.length > 3 ? ` … (${p.length})` : '') }));
  }));
  const more = $('#pred-more');
  more.hidden = recs.length <= predShown;
  more.textContent = `Show ${Math.min(PRED_SHOW * 4, recs.length - predShown)} more of ${recs.length}`;
}

// Predicted classes (or value ranges) over time: stacked bars in 30 slices of the window.
function histogram(recs, window, card) {
  const BINS = 30;
  const end = Date.now();
  const start = end - window * 1000;
  const width = (window * 1000) / BINS;
  const values = [];
  for (const r of recs) if (r.status === 200) for (const v of predicted(r)) values.push([Date.parse(r.time), v]);
  if (!values.length) return [h('p', { class: 'muted', text: 'No prediction recorded in this window yet (the log keeps outputs unless record = "none").' })];
  const numeric = card.task === 'regression' || values.every(([, v]) => typeof v === 'number' && !card.classes);
  let cats, catOf;
  if (numeric) {
    const nums = values.map(([, v]) => Number(v)).filter(Number.isFinite);
    const lo = Math.min(...nums), hi = Math.max(...nums);
    const n = hi > lo ? 6 : 1;
    const w = (hi - lo) / n || 1;
    cats = Array.from({ length: n }, (_, i) => `${fmt(lo + i * w)} to ${fmt(n === 1 ? hi : lo + (i + 1) * w)}`);
    catOf = (v) => Math.min(n - 1, Math.max(0, Math.floor((Number(v) - lo) / w)));
  } else {
    cats = [...(card.classes || [])];
    for (const [, v] of values) if (!cats.includes(String(v))) cats.push(String(v));
    catOf = (v) => cats.indexOf(String(v));
  }
  const bins = Array.from({ length: BINS }, () => new Array(cats.length).fill(0));
  const totals = new Array(cats.length).fill(0);
  for (const [ts, v] of values) {
    const b = Math.min(BINS - 1, Math.max(0, Math.floor((ts - start) / width)));
    const c = catOf(v);
    if (c < 0) continue;
    bins[b][c]++;
    totals[c]++;
  }
  const max = niceMax(Math.max(...bins.map((b) => b.reduce((a, x) => a + x, 0))));
  const W = 600, H = 150, L = 0, R = 0, T = 3, B = 1;
  const bw = (W - L - R) / BINS;
  const rects = [];
  bins.forEach((b, i) => {
    let acc = 0;
    b.forEach((n, c) => {
      if (!n) return;
      const y0 = T + (1 - acc / max) * (H - T - B);
      const y1 = T + (1 - (acc + n) / max) * (H - T - B);
      rects.push(h('rect', { x: (L + i * bw + 1).toFixed(1), y: y1.toFixed(1), width: (bw - 2).toFixed(1), height: (y0 - y1).toFixed(1), fill: `var(--c${c % 8})` },
        h('title', { text: `${cats[c]}: ${n}` })));
      acc += n;
    });
  });
  const summary = `Predictions over the last ${fmtSeconds(window)}: ${cats.map((c, i) => `${c} ${totals[i]}`).join(', ')}`;
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, preserveAspectRatio: 'none', class: 'histogram' },
    h('title', { text: summary }),
    h('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B, 'vector-effect': 'non-scaling-stroke' }),
    ...rects);
  const total = totals.reduce((a, x) => a + x, 0);
  return [h('h2', { text: numeric ? 'Predicted values over time' : 'Predicted classes over time' }),
    h('div', { class: 'chart', id: 'pred-chart' }, ...framed(svg, max, window)),
    h('ul', { class: 'legend', id: 'pred-legend' }, ...cats.map((c, i) => h('li', { 'data-category': c, 'data-count': totals[i] },
      h('span', { class: `swatch s${i % 8}`, 'aria-hidden': 'true' }), `${c}: ${totals[i]} (${total ? Math.round((100 * totals[i]) / total) : 0}%)`)))];
}

// ---------------------------------------------------------------------------------------------
// Jobs.

const jobRows = new Map();

function jobRow(job) {
  let row = jobRows.get(job.id);
  if (!row) {
    const cells = {
      id: h('td', { title: job.id, text: job.id.replace(/^job-/, '').slice(-8) }),
      model: h('td'),
      state: h('td'),
      progress: h('td'),
      rate: h('td', { class: 'num' }),
      eta: h('td', { class: 'num' }),
      failed: h('td', { class: 'num' }),
      created: h('td'),
      actions: h('td'),
    };
    const bar = h('span');
    const pb = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-label': `Progress of job ${job.id}` }, bar);
    const label = h('span', { class: 'num' });
    cells.progress.append(h('div', { class: 'progress' }, pb, label));
    const cancel = h('button', { type: 'button', class: 'danger', text: 'Cancel', 'aria-label': `Cancel job ${job.id}`, onclick: () => cancelJob(job.id, cancel) });
    const download = h('button', { type: 'button', text: 'Download', 'aria-label': `Download the results of job ${job.id}`, onclick: () => downloadJob(job.id, download) });
    cells.actions.append(h('div', { class: 'actions' }, cancel, download));
    const tr = h('tr', { 'data-job': job.id }, ...Object.values(cells));
    row = { tr, cells, bar, pb, label, cancel, download };
    jobRows.set(job.id, row);
  }
  const { cells, bar, pb, label, cancel, download } = row;
  const total = job.rows_total || 0;
  const done = job.rows_done || 0;
  const pct = total ? Math.min(100, (100 * done) / total) : (job.state === 'succeeded' ? 100 : 0);
  cells.model.textContent = job.version ? `${job.model} v${job.version}` : job.model;
  cells.state.replaceChildren(h('span', { class: `state ${job.state}`, 'data-state': job.state, text: job.state }));
  pb.setAttribute('aria-valuemax', String(total));
  pb.setAttribute('aria-valuenow', String(done));
  pb.setAttribute('aria-valuetext', `${done} of ${total} rows (${Math.floor(pct)}%)`);
  bar.style.width = `${pct}%`;
  pb.parentElement.className = `progress ${job.state}`;
  label.textContent = `${Math.floor(pct)}%`;
  cells.rate.textContent = job.rows_per_second ? fmt(job.rows_per_second) : '–';
  cells.eta.textContent = job.state === 'running' || job.state === 'queued' ? fmtSeconds(job.eta_seconds) : '–';
  const errs = job.errors || [];
  cells.failed.replaceChildren(String(job.rows_failed || 0));
  if (errs.length) {
    cells.failed.append(h('details', {}, h('summary', { text: `${errs.length} chunk${errs.length > 1 ? 's' : ''}` }),
      h('ul', { class: 'errors-list' }, ...errs.slice(0, 20).map((e) => h('li', { text: `rows ${e.rows[0]}–${e.rows[1]}: ${e.error}` })))));
  }
  cells.created.textContent = localDateTime(job.created);
  cells.created.title = job.owner ? `submitted by ${job.owner}` : '';
  cancel.hidden = !(job.state === 'queued' || job.state === 'running');
  download.hidden = done === 0;
  return row.tr;
}

const jobsTick = serial(async () => {
  const ans = await api('jobs');
  banner(null);
  const tbody = $('#jobs-table tbody');
  const rows = ans.jobs.map(jobRow);
  if (!rows.length) {
    tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9, class: 'muted', text: 'No job yet. Submit one above, or POST /jobs.' })));
    return;
  }
  // In place: the rows already shown keep their elements (and the focus of their buttons).
  const want = new Set(rows);
  for (const tr of [...tbody.children]) if (!want.has(tr)) tr.remove();
  rows.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
});

async function submitJob(ev) {
  ev.preventDefault();
  const model = $('#job-model').value;
  const file = $('#job-file').files[0];
  if (!model || !file) { toast('Choose a model and a file', true); return; }
  const card = state.cards.get(model) || {};
  const form = new FormData();
  form.append('model', model);
  const chunk = $('#job-chunk').value.trim();
  if (chunk) form.append('chunk_rows', chunk);
  if ($('#job-probabilities').checked && card.task === 'classification') form.append('outputs', 'prediction,probabilities');
  // The options come before the file: the server streams the file to disk as it reads it.
  form.append('file', file, file.name);
  try {
    const job = await api('jobs', { method: 'POST', body: form });
    toast(`Job ${job.id} submitted: ${job.rows_total} rows`);
    $('#job-file').value = '';
    await jobsTick();
  } catch (e) {
    toast(explain(e), true);
  }
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    await api(`jobs/${enc(id)}/cancel`, { method: 'POST' });
    toast(`Job ${id} cancelled`);
  } catch (e) {
    toast(explain(e), true);
  } finally {
    button.disabled = false;
    await jobsTick().catch(() => {});
  }
}

async function downloadJob(id, button) {
  button.disabled = true;
  try {
    const r = await api(`jobs/${enc(id)}/results`, { raw: true });
    saveBlob(await r.blob(), `${id}.jsonl`);
  } catch (e) {
    toast(explain(e), true);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Panels and navigation: #/models, #/live/MODEL, #/try/MODEL, #/predictions/MODEL, #/jobs.

const enter = {
  models: () => poll(renderModels, 5000),
  live: async () => {
    lastStats = null;
    await ensureModels();
    poll(liveOverview, 2000);
    poll(liveCharts, 2000);
  },
  try: async () => {
    await ensureModels();
    renderTryForm();
  },
  predictions: async () => {
    await ensureModels();
    predState.key = '';
    poll(predictionsTick, 3000);
  },
  jobs: async () => {
    await ensureModels();
    poll(jobsTick, 1000);
  },
};

async function ensureModels() {
  try {
    await loadModels();
    banner(null);
  } catch (e) {
    banner(explain(e));
  }
  if (state.model) for (const sel of ['#live-model', '#try-model', '#pred-model', '#job-model']) {
    const el = $(sel);
    if ([...el.options].some((o) => o.value === state.model)) el.value = state.model;
  }
}

async function show() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const name = PANELS.includes(parts[0]) ? parts[0] : 'models';
  if (parts[1]) state.model = decodeURIComponent(parts[1]);
  for (const stop of state.stops) stop();
  state.stops = [];
  banner(null);
  for (const p of PANELS) $(`#panel-${p}`).hidden = p !== name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.panel === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const moved = state.panel !== null && state.panel !== name;
  state.panel = name;
  document.title = `${$(`#h-${name}`).textContent} · ferroserve`;
  if (moved) $('#main').focus({ preventScroll: true });
  await enter[name]();
}

function onModelChange(sel, then) {
  $(sel).addEventListener('change', (ev) => {
    chooseModel(ev.target.value);
    history.replaceState(null, '', `#/${state.panel}/${enc(ev.target.value)}`);
    then();
  });
}

async function start() {
  $('#signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = $('#key').value.trim();
    if (!v) return;
    sessionStorage.setItem(KEY, v);
    $('#key').value = '';
    await loadCaller();
    await show();
  });
  $('#signout-button').addEventListener('click', async () => {
    sessionStorage.removeItem(KEY);
    await loadCaller();
    await show();
    $('#key').focus();
  });
  $('#models-refresh').addEventListener('click', renderModels);
  onModelChange('#live-model', () => liveCharts().catch((e) => banner(explain(e))));
  $('#live-all').addEventListener('click', () => { liveAll = !liveAll; liveOverview().catch((e) => banner(explain(e))); });
  $('#live-window').addEventListener('change', () => liveCharts().catch((e) => banner(explain(e))));
  $('#live-version').addEventListener('change', () => liveCharts().catch((e) => banner(explain(e))));
  onModelChange('#try-model', renderTryForm);
  $('#try-form').addEventListener('submit', tryPredict);
  $('#try-form').addEventListener('input', updateCurl);
  $('#try-copy').addEventListener('click', copyCurl);
  $('#try-csv').addEventListener('change', tryCsv);
  onModelChange('#pred-model', () => predictionsTick().catch((e) => banner(explain(e))));
  for (const sel of ['#pred-window', '#pred-outcome', '#pred-version']) {
    $(sel).addEventListener('change', () => predictionsTick().catch((e) => banner(explain(e))));
  }
  $('#pred-search').addEventListener('input', () => renderPredictions(predQuery()));
  $('#pred-more').addEventListener('click', () => { predShown += PRED_SHOW * 4; renderPredictions(predQuery()); });
  onModelChange('#job-model', () => {});
  $('#job-form').addEventListener('submit', submitJob);
  window.addEventListener('hashchange', show);
  api('v2').then((m) => { $('#server-version').textContent = `${m.version}`; }).catch(() => {});
  await loadCaller();
  await show();
}

start();

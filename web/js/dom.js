// DOM helpers. The dashboard never assigns HTML strings (the CSP enforces Trusted Types with no
// policy): every node is built here, text always goes through text nodes.

/**
 * Build an element. `attrs` keys: `class`, `text`, `style` (object, applied through the CSSOM),
 * `dataset` (object), `on<event>` (listener), boolean attributes (true/false), anything else
 * as an attribute. Children may be nodes, strings, numbers, arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'style') Object.assign(el.style, v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden' || k === 'open') el[k] = Boolean(v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.append(c);
    else el.append(document.createTextNode(String(c)));
  }
}

/** Replace the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ---------------------------------------------------------------------------------------------
// Formatting

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(typeof ms === 'string' ? Date.parse(ms) : ms);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

export function fmtClock(ms) {
  const d = new Date(typeof ms === 'string' ? Date.parse(ms) : ms);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtAgo(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '—';
  const t = typeof ms === 'string' ? Date.parse(ms) : ms;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const hr = Math.round(m / 60);
  if (hr < 48) return `${hr}h ago`;
  return `${Math.round(hr / 24)}d ago`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return '—';
  sec = Math.round(sec);
  const d = Math.floor(sec / 86400);
  const hr = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${sec % 60}s`;
  return `${sec}s`;
}

export function fmtNum(n) {
  if (n === null || n === undefined) return '—';
  return Number(n).toLocaleString();
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return '—';
  const v = Number(usd);
  return v < 0.01 && v > 0 ? `$${v.toFixed(4)}` : `$${v.toFixed(2)}`;
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : '');

// ---------------------------------------------------------------------------------------------
// Statuses

export const STATUSES = [
  'pending', 'idle', 'working', 'permission_prompt', 'asking', 'stalled', 'rate_limited',
  'interrupted', 'completed', 'killed', 'crashed',
];
export const LIVE = new Set(STATUSES.slice(0, 8));
export const ENDED = new Set(['completed', 'killed', 'crashed']);

const STATUS_LABEL = {
  pending: 'Starting', idle: 'Idle', working: 'Working', permission_prompt: 'Needs approval',
  asking: 'Question', stalled: 'Stalled', rate_limited: 'Rate limited', interrupted: 'Interrupted',
  completed: 'Completed', killed: 'Killed', crashed: 'Crashed',
};

export const statusLabel = (s) => STATUS_LABEL[s] || s;

export function statusBadge(status) {
  return h('span', { class: `badge st-${status}`, dataset: { status } }, statusLabel(status));
}

/** Debounce a function (trailing). */
export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Coalesce calls into one per animation frame. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

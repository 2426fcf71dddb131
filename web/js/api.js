// The REST client: same-origin fetch with the session cookie (never a stored token).

export class ApiError extends Error {
  constructor(status, code, message, details, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.body = body;
  }

  /** The route does not exist on this server (feature not built or switched off). */
  get missing() {
    return this.status === 404 && (this.code === 'NOT_FOUND' || this.code === 'FEATURE_DISABLED')
      && /No route|disabled/i.test(this.message);
  }
}

const listeners = new Set();

/** Called with the error whenever the server answers 401 (credential missing or expired). */
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Call the API. `body` undefined = no body. Options: `quiet401` (do not announce a 401),
 * `raw` (return the Response).
 */
export async function api(method, path, body, opts = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'NETWORK', 'The server is unreachable (network error)', null, null);
  }
  if (opts.raw && res.ok) return res;
  const text = await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok) {
    const code = json?.code || `HTTP_${res.status}`;
    const message = json?.message || json?.error || `${method} ${path} answered ${res.status}`;
    const err = new ApiError(res.status, code, message, json?.details, json);
    if (res.status === 401 && !opts.quiet401) for (const fn of listeners) fn(err);
    throw err;
  }
  return json;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const del = (path, body, opts) => api('DELETE', path, body, opts);
export const patch = (path, body, opts) => api('PATCH', path, body, opts);

/** Build a query string from an object, skipping empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

/** Run `fn` over `items` with at most `limit` in flight. */
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// Server-Sent Events with resume. Each (re)connect mints a fresh single-use SSE token
// (POST /v1/auth/sse-token; when the server has no such route the stream relies on the session
// cookie or zero-config) and passes the last durable id it saw as `lastEventId`, so the server
// replays exactly what was missed: no gaps, no duplicates. Frames are requested with
// `named=false` so one `message` handler sees every frame.

import { api, ApiError } from './api.js';

let sseTokens = true; // false once the server said the route does not exist

async function mintToken(sessionId) {
  if (!sseTokens) return null;
  try {
    const body = sessionId ? { sessionId } : {};
    const r = await api('POST', '/v1/auth/sse-token', body, { quiet401: true });
    return r?.token || null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && /No route/i.test(e.message)) {
      sseTokens = false;
      return null;
    }
    if (e instanceof ApiError && e.status === 401) throw e;
    return null; // e.g. 429 (too many outstanding tokens): try the cookie
  }
}

/** Per-stream statistics, kept for the connection indicator and the tests. */
function newStats() {
  return { connects: 0, frames: 0, durable: 0, duplicates: 0, gaps: 0, firstId: null, lastId: null, drops: 0 };
}

export class EventStream {
  /**
   * @param {object} o
   * @param {string} o.path  `/v1/events` or `/v1/sessions/<id>/events`
   * @param {string} [o.sessionId]  binds the SSE token to one session
   * @param {number|null} [o.after]  resume after this durable id (null = live only)
   * @param {boolean} [o.dense]  ids are dense (per-session streams): count gaps
   * @param {(env: object, replay: boolean) => void} o.onEvent
   * @param {(state: string) => void} [o.onState]
   * @param {() => void} [o.onUnauthorized]
   */
  constructor(o) {
    this.o = o;
    this.lastId = o.after ?? null;
    this.state = 'idle';
    this.es = null;
    this.timer = 0;
    this.attempt = 0;
    this.stopped = false;
    this.replayUntil = 0;
    this.stats = newStats();
  }

  /** Connect (again): resumes after the last durable id seen. A no-op while running. */
  start() {
    if (!this.stopped && (this.es || this.timer || this.connecting)) return this;
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.es) this.es.close();
    this.es = null;
    this.setState('closed');
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.o.onState?.(s);
  }

  async connect() {
    if (this.stopped) return;
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    let token = null;
    this.connecting = true;
    try {
      token = await mintToken(this.o.sessionId);
    } catch (e) {
      if (e.status === 401) {
        this.connecting = false;
        this.o.onUnauthorized?.();
        this.setState('offline');
        return;
      }
    }
    this.connecting = false;
    if (this.stopped || this.es) return;
    const u = new URL(this.o.path, location.origin);
    u.searchParams.set('named', 'false');
    if (this.o.types) u.searchParams.set('types', this.o.types);
    if (token) u.searchParams.set('token', token);
    if (this.lastId !== null) u.searchParams.set('lastEventId', String(this.lastId));
    const es = new EventSource(u.toString(), { withCredentials: true });
    this.es = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.stats.connects += 1;
      this.setState('live');
    };
    es.onmessage = (m) => this.frame(m.data);
    es.onerror = () => {
      if (this.es !== es) return;
      // Own the reconnect: the browser would reuse a spent token and the old cursor header.
      es.close();
      this.es = null;
      if (this.stopped) return;
      if (opened) this.stats.drops += 1;
      this.attempt += 1;
      this.setState(this.attempt > 3 ? 'offline' : 'reconnecting');
      const delay = Math.min(8000, 250 * 2 ** Math.min(this.attempt, 5)) + Math.random() * 200;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.connect();
      }, delay);
    };
  }

  frame(data) {
    let env;
    try {
      env = JSON.parse(data);
    } catch {
      return;
    }
    this.stats.frames += 1;
    if (env.event === 'connected') {
      // Frames with an id up to this one are the replay of what happened before the connect.
      this.replayUntil = this.o.dense ? env.data?.lastEventId ?? 0 : env.data?.lastGlobalSeq ?? 0;
      // A live-only first connect: later reconnects resume from here.
      if (this.lastId === null) this.lastId = this.replayUntil;
    }
    const id = this.o.dense ? env.id : env.globalSeq;
    if (id !== undefined && id !== null) {
      if (this.lastId !== null && id <= this.lastId) {
        this.stats.duplicates += 1;
        return; // already seen: never apply twice
      }
      if (this.o.dense && this.lastId !== null && id !== this.lastId + 1) this.stats.gaps += 1;
      if (this.stats.firstId === null) this.stats.firstId = id;
      this.stats.lastId = id;
      this.stats.durable += 1;
      this.lastId = id;
    }
    const replay = id !== undefined && id !== null && id <= this.replayUntil;
    this.o.onEvent(env, replay);
    if (env.event === 'ended' && this.o.dense) {
      // The server closes a finished session's stream; reconnecting would only replay `ended`.
      this.stop();
      this.setState('ended');
    }
  }
}

// The dashboard shell: authentication check, router, the global event stream, the connection
// indicator, toasts and keyboard shortcuts.

import { h, put, $ } from './dom.js';
import { api, get, ApiError, onUnauthorized } from './api.js';
import { EventStream } from './stream.js';
import { dialogOpen, helpDialog, newSessionDialog } from './dialogs.js';
import * as overview from './pages/overview.js';
import * as sessions from './pages/sessions.js';
import * as session from './pages/session.js';
import * as pipelines from './pages/pipelines.js';
import * as audit from './pages/audit.js';
import * as users from './pages/users.js';
import * as login from './pages/login.js';

export const BASE = '/dashboard';

const ROUTES = [
  [/^\/?$/, overview, 'overview'],
  [/^\/sessions\/?$/, sessions, 'sessions'],
  [/^\/sessions\/([^/]+)\/?$/, session, 'sessions'],
  [/^\/pipelines\/?$/, pipelines, 'pipelines'],
  [/^\/pipelines\/([^/]+)\/?$/, pipelines, 'pipelines'],
  [/^\/audit\/?$/, audit, 'audit'],
  [/^\/users\/?$/, users, 'users'],
  [/^\/login\/?$/, login, null],
];

const app = {
  whoami: null,
  page: null,
  global: null,
  globalListeners: new Set(),
  connStates: new Map(),
  authed: false,
  lastGlobalSeq: null,
};

// Read-only diagnostics for tests and bug reports (no secrets: the token never reaches JS).
window.__aegis = {
  app,
  streams: () => {
    const out = {};
    if (app.global) out.global = { state: app.global.state, ...app.global.stats };
    const s = app.page?.stream?.();
    if (s) out.session = { state: s.state, ...s.stats };
    return out;
  },
  metrics: {},
};

// ---------------------------------------------------------------------------------------------
// Toasts and connection indicator

export function toast(message, kind = 'info') {
  const box = $('#toasts');
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(t);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 3000);
}

export function errorToast(e, what) {
  const msg = e instanceof ApiError ? `${e.message}${e.code && e.status ? ` (${e.code})` : ''}` : String(e?.message || e);
  toast(what ? `${what}: ${msg}` : msg, 'error');
}

const CONN_TEXT = {
  live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline — retrying',
  closed: 'Closed', ended: 'Live', idle: 'Connecting…',
};
const RANK = { offline: 4, reconnecting: 3, connecting: 2, idle: 2, live: 1, ended: 1, closed: 0 };

export function setConn(name, state) {
  if (state === null) app.connStates.delete(name);
  else app.connStates.set(name, state);
  let worst = 'closed';
  for (const s of app.connStates.values()) if ((RANK[s] ?? 0) > (RANK[worst] ?? 0)) worst = s;
  const el = $('#conn');
  if (!el) return;
  el.dataset.state = worst;
  put($('.label', el), CONN_TEXT[worst] || worst);
  el.title = [...app.connStates].map(([n, s]) => `${n}: ${s}`).join(', ');
}

// ---------------------------------------------------------------------------------------------
// Router

export function navigate(path, { replace = false } = {}) {
  const url = path.startsWith(BASE) ? path : `${BASE}${path}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

function currentPath() {
  let p = location.pathname;
  if (p.startsWith(BASE)) p = p.slice(BASE.length);
  return p || '/';
}

let routeSeq = 0;

async function route({ focus = true } = {}) {
  const path = currentPath();
  if (!app.authed && !/^\/login\/?$/.test(path)) {
    showLogin();
    return;
  }
  const seq = ++routeSeq;
  if (app.page?.unmount) app.page.unmount();
  app.page = null;
  setConn('session', null);
  const main = $('#main');
  put(main);
  for (const [re, mod, nav] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    document.body.dataset.page = nav || 'login';
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    closeMenu();
    const ctx = pageContext();
    const page = await mod.mount(main, ctx, m.slice(1).map(decodeURIComponent));
    if (seq !== routeSeq) {
      page?.unmount?.();
      return;
    }
    app.page = page || {};
    const a = document.activeElement;
    const pageFocused = a && a !== main && main.contains(a);
    if (focus && !pageFocused) {
      const h1 = main.querySelector('h1');
      if (h1) {
        h1.setAttribute('tabindex', '-1');
        h1.focus({ preventScroll: true });
      }
    }
    return;
  }
  document.title = 'Not found · Aegis';
  put(main, h('section', { class: 'page' }, h('h1', null, 'Not found'),
    h('p', null, 'There is no dashboard page at this address. '), h('a', { href: `${BASE}/` }, 'Go to Overview')));
}

function pageContext() {
  return {
    navigate,
    toast,
    errorToast,
    whoami: app.whoami,
    onGlobal(fn) {
      app.globalListeners.add(fn);
      return () => app.globalListeners.delete(fn);
    },
    setConn,
    lastGlobalSeq: () => app.lastGlobalSeq,
    loggedIn,
    openNewSession,
    title(t) {
      document.title = `${t} · Aegis`;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Authentication

async function checkAuth() {
  // whoami tells who we are; zero-config answers as `local`. Servers without it: probe a list.
  try {
    app.whoami = await get('/v1/auth/whoami', { quiet401: true });
    return true;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) return false;
    if (e.status !== 404) throw e;
  }
  try {
    await get('/v1/sessions?limit=1', { quiet401: true });
    app.whoami = null;
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return false;
    throw e;
  }
}

function showLogin() {
  stopGlobal();
  app.authed = false;
  document.body.classList.add('logged-out');
  if (!/^\/login\/?$/.test(currentPath())) {
    sessionStorage.setItem('aegis.returnTo', location.pathname + location.search);
    history.replaceState(null, '', `${BASE}/login`);
  }
  route();
}

export async function loggedIn() {
  app.authed = true;
  document.body.classList.remove('logged-out');
  await checkAuth().catch(() => {});
  renderWho();
  startGlobal();
  const back = sessionStorage.getItem('aegis.returnTo');
  sessionStorage.removeItem('aegis.returnTo');
  navigate(back && !back.includes('/login') ? back : `${BASE}/`, { replace: true });
}

function renderWho() {
  const w = app.whoami;
  const box = $('#whoami');
  if (!box) return;
  if (w) {
    put(box, h('span', { class: 'who-name' }, w.displayName || w.principal),
      h('span', { class: 'muted' }, ` · ${w.role}${w.authMethod === 'local' ? ' (zero-config)' : ''}`));
  } else {
    put(box, h('span', { class: 'muted' }, 'Signed in'));
  }
  const logout = $('#logout');
  logout.hidden = !w || w.authMethod === 'local';
}

async function logout() {
  try {
    await api('POST', '/auth/logout', undefined, { quiet401: true });
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 404 || e.status === 401))) {
      errorToast(e, 'Sign out failed');
      return;
    }
  }
  app.whoami = null;
  showLogin();
}

// ---------------------------------------------------------------------------------------------
// Global stream

function startGlobal() {
  stopGlobal();
  app.global = new EventStream({
    path: '/v1/events',
    after: null,
    dense: false,
    onEvent: (env, replay) => {
      if (env.event === 'connected') app.lastGlobalSeq = env.data?.lastGlobalSeq ?? app.lastGlobalSeq;
      if (env.globalSeq) app.lastGlobalSeq = env.globalSeq;
      for (const fn of app.globalListeners) {
        try {
          fn(env, replay);
        } catch (e) {
          console.error(e);
        }
      }
    },
    onState: (s) => setConn('events', s),
    onUnauthorized: () => showLogin(),
  }).start();
}

function stopGlobal() {
  if (app.global) app.global.stop();
  app.global = null;
  setConn('events', null);
}

// ---------------------------------------------------------------------------------------------
// Keyboard

let gPending = 0;

function typingIn(el) {
  if (!el) return false;
  const tag = el.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || el.isContentEditable;
}

const G_TARGETS = { o: '/', s: '/sessions', p: '/pipelines', a: '/audit', u: '/users' };

function onKey(e) {
  if (!app.authed) return;
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (mod && !e.altKey && key === 'k') {
    e.preventDefault();
    const s = $('#search');
    s.focus();
    s.select();
    return;
  }
  if (mod && !e.altKey && key === 'n') {
    e.preventDefault();
    if (!dialogOpen()) openNewSession();
    return;
  }
  if (mod || e.altKey || dialogOpen()) return;
  if (typingIn(e.target)) {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (gPending) {
    clearTimeout(gPending);
    gPending = 0;
    const to = G_TARGETS[key];
    if (to) {
      e.preventDefault();
      navigate(to);
    }
    return;
  }
  if (key === 'g') {
    gPending = setTimeout(() => {
      gPending = 0;
    }, 1500);
    return;
  }
  if (e.key === '?') {
    e.preventDefault();
    helpDialog();
    return;
  }
  if (e.key === 'Escape') {
    closeMenu();
    return;
  }
  if (app.page?.onKey?.(e, key)) e.preventDefault();
}

export async function openNewSession() {
  let workDirs = [];
  try {
    const l = await get('/v1/sessions?limit=100');
    workDirs = [...new Set((l.sessions || []).map((s) => s.workDir))];
  } catch {
    workDirs = [];
  }
  const s = await newSessionDialog({ workDirs });
  if (s?.id) {
    toast(s.reused ? `Reused session ${s.name}` : `Created session ${s.name}`);
    navigate(`/sessions/${s.id}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Boot

function closeMenu() {
  document.body.classList.remove('menu-open');
  $('#menu-toggle')?.setAttribute('aria-expanded', 'false');
}

function wireShell() {
  document.addEventListener('keydown', onKey);
  document.addEventListener('click', (e) => {
    const a = e.target.closest?.('a[href]');
    if (!a || a.target || a.hasAttribute('download') || e.defaultPrevented) return;
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(`${BASE}/`)) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener('popstate', () => route());
  $('#new-session-btn').addEventListener('click', () => openNewSession());
  $('#logout').addEventListener('click', () => logout());
  document.querySelector('.content').addEventListener('click', (e) => {
    if (document.body.classList.contains('menu-open') && !e.target.closest('#menu-toggle')) {
      e.preventDefault();
      closeMenu();
    }
  }, true);
  $('#menu-toggle').addEventListener('click', () => {
    const open = document.body.classList.toggle('menu-open');
    $('#menu-toggle').setAttribute('aria-expanded', String(open));
  });
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = $('#search').value.trim();
    if (app.page?.search) app.page.search(q);
    else navigate(`/sessions${q ? `?q=${encodeURIComponent(q)}` : ''}`);
  });
  $('#search').addEventListener('input', () => {
    if (app.page?.search) app.page.search($('#search').value.trim());
  });
  onUnauthorized(() => {
    if (app.authed) {
      toast('Your sign-in expired or was revoked. Sign in again.', 'error');
      showLogin();
    }
  });
}

// Streams hold one of the browser's six connections per server each: release them when the
// page is put away (back/forward cache) or has been hidden for a while, and resume from the
// last event id when it comes back — nothing is lost in between.
function suspendStreams() {
  app.global?.stop();
  app.page?.stream?.()?.stop();
}

function resumeStreams() {
  if (!app.authed) return;
  app.global?.start();
  const s = app.page?.stream?.();
  if (s && s.state !== 'ended') s.start();
}

let hiddenTimer = 0;
function wireLifecycle() {
  window.addEventListener('pagehide', suspendStreams);
  window.addEventListener('pageshow', (e) => {
    if (e.persisted) resumeStreams();
  });
  document.addEventListener('visibilitychange', () => {
    clearTimeout(hiddenTimer);
    if (document.hidden) hiddenTimer = setTimeout(suspendStreams, 30000);
    else resumeStreams();
  });
}

async function boot() {
  wireShell();
  wireLifecycle();
  let ok = false;
  try {
    ok = await checkAuth();
  } catch (e) {
    put($('#main'), h('section', { class: 'page' }, h('h1', null, 'Cannot reach the server'),
      h('p', null, e instanceof ApiError ? e.message : String(e)),
      h('button', { class: 'btn primary', onclick: () => location.reload() }, 'Retry')));
    return;
  }
  if (!ok) {
    showLogin();
    return;
  }
  app.authed = true;
  document.body.classList.remove('logged-out');
  renderWho();
  startGlobal();
  await route({ focus: false });
  document.body.dataset.ready = 'true';
}

boot();

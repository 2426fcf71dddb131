// Overview: server health, agent runtime, counts by status, recent sessions, recent activity.

import { h, put, statusBadge, statusLabel, fmtAgo, fmtDuration, fmtClock, shortId, STATUSES, perFrame } from '../dom.js';
import { get, qs } from '../api.js';

const ACTIVITY_TYPES = new Set(['created', 'status', 'ended', 'approval', 'approval_resolved', 'question', 'stall', 'pipeline']);

export async function mount(main, ctx) {
  ctx.title('Overview');
  const healthBox = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const agentsBox = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const countsBox = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const recentBox = h('div', { class: 'card-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const activityList = h('ol', { class: 'activity', 'aria-live': 'off' });
  const activityBox = h('div', { class: 'card-body' }, activityList);
  const names = new Map();

  put(main, h('section', { class: 'page page-overview' },
    h('div', { class: 'page-head' }, h('h1', null, 'Overview')),
    h('div', { class: 'grid' },
      card('Server', healthBox, 'card-health'),
      card('Agent runtime', agentsBox, 'card-agents'),
      card('Sessions by status', countsBox, 'card-counts'),
      card('Recent sessions', recentBox, 'card-recent wide'),
      card('Recent activity', activityBox, 'card-activity wide'))));

  async function loadHealth() {
    try {
      const hl = await get('/v1/health');
      const store = hl.store || {};
      put(healthBox, h('dl', { class: 'kv' },
        kv('Status', h('span', { class: `health health-${hl.status}`, dataset: { health: hl.status } }, hl.status)),
        kv('Version', hl.version ?? '—'),
        kv('Uptime', fmtDuration(hl.uptime)),
        kv('Platform', hl.platform ?? '—'),
        kv('Store', `${store.type ?? '—'} ${store.healthy === false ? `(unhealthy: ${store.error || 'error'})` : '(healthy)'}`),
        kv('Live sessions', `${hl.sessions?.active ?? '—'} of ${hl.sessions?.total ?? '—'}`)));
      const agents = Object.entries(hl.agents || {});
      let detail = [];
      try {
        detail = (await get('/v1/agents')).agents || [];
      } catch {
        detail = [];
      }
      const byName = new Map(detail.map((a) => [a.name, a]));
      put(agentsBox, agents.length === 0 ? h('p', { class: 'muted' }, 'No agents configured.')
        : h('table', { class: 'table compact' },
          h('thead', null, h('tr', null, ...['Agent', 'Available', 'Version'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, agents.map(([name, a]) => {
            const d = byName.get(name) || {};
            return h('tr', { dataset: { agent: name } },
              h('td', null, name, d.default ? h('span', { class: 'tag' }, 'default') : null,
                h('div', { class: 'muted small' }, `via ${a.source ?? '—'}`)),
              h('td', null, a.available ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'bad', title: a.error || '' }, `no${a.error ? ` — ${a.error}` : ''}`)),
              h('td', null, a.version ?? d.version ?? d.agentInfo?.version ?? '—'));
          }))));
    } catch (e) {
      put(healthBox, h('p', { class: 'bad' }, `Health unavailable: ${e.message}`));
      put(agentsBox, h('p', { class: 'muted' }, '—'));
    }
  }

  async function loadCounts() {
    try {
      const st = await get('/v1/sessions/stats');
      const by = st.byStatus || {};
      put(countsBox,
        h('ul', { class: 'counts' }, STATUSES.filter((s) => by[s]).map((s) => h('li', null,
          h('a', { href: `/dashboard/sessions?status=${s}`, class: 'count-link' }, statusBadge(s), h('span', { class: 'count', dataset: { count: s } }, by[s]))))),
        Object.values(by).every((n) => !n) ? h('p', { class: 'muted' }, 'No sessions yet.') : null,
        h('dl', { class: 'kv small' },
          kv('Live', st.active ?? 0), kv('Created', st.totalCreated ?? 0), kv('Completed', st.totalCompleted ?? 0),
          kv('Crashed', st.totalFailed ?? 0), kv('Killed', st.totalKilled ?? 0)));
    } catch (e) {
      put(countsBox, h('p', { class: 'bad' }, `Counts unavailable: ${e.message}`));
    }
  }

  async function loadRecent() {
    try {
      const l = await get(`/v1/sessions${qs({ limit: 8 })}`);
      for (const s of l.sessions) names.set(s.id, s.name);
      put(recentBox, l.sessions.length === 0
        ? h('div', { class: 'empty' }, h('p', null, 'No sessions yet.'),
          h('button', { class: 'btn primary', onclick: () => ctx.openNewSession() }, 'Create the first session'))
        : h('table', { class: 'table' },
          h('thead', null, h('tr', null, ...['Session', 'Status', 'Work dir', 'Last activity'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, l.sessions.map((s) => h('tr', null,
            h('td', null, h('a', { href: `/dashboard/sessions/${s.id}` }, s.name), h('span', { class: 'muted mono' }, ` ${shortId(s.id)}`)),
            h('td', null, statusBadge(s.status)),
            h('td', { class: 'mono ellipsis', title: s.workDir }, s.workDir),
            h('td', null, fmtAgo(s.lastActivity)))))));
    } catch (e) {
      put(recentBox, h('p', { class: 'bad' }, `Sessions unavailable: ${e.message}`));
    }
  }

  const items = [];
  const renderActivity = perFrame(() => {
    put(activityList, items.length === 0 ? h('li', { class: 'muted' }, 'No activity yet.')
      : items.slice(0, 15).map((ev) => h('li', null,
        h('span', { class: 'ts' }, fmtClock(ev.timestamp)),
        describe(ev, names))));
  });

  function push(ev) {
    if (!ACTIVITY_TYPES.has(ev.event)) return;
    if (ev.event === 'created' && ev.data?.session) names.set(ev.sessionId, ev.data.session.name);
    if (items.some((x) => x.globalSeq && x.globalSeq === ev.globalSeq)) return;
    items.unshift(ev);
    items.length = Math.min(items.length, 50);
    renderActivity();
  }

  async function loadActivity() {
    // The newest events: the global log from a little before the current sequence.
    let last = ctx.lastGlobalSeq();
    for (let i = 0; last === null && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      last = ctx.lastGlobalSeq();
    }
    try {
      let after = 0;
      if (last) after = Math.max(0, last - 300);
      const log = await get(`/v1/events/log${qs({ after, limit: 1000, types: [...ACTIVITY_TYPES].join(',') })}`);
      const evs = (log.events || []).slice(-50);
      for (const ev of evs) push(ev);
      renderActivity();
    } catch {
      renderActivity();
    }
  }

  const refreshCounts = debounceMs(() => {
    loadCounts();
    loadRecent();
  }, 400);
  const off = ctx.onGlobal((ev, replay) => {
    if (!replay) push(ev);
    if (['created', 'status', 'ended', 'config'].includes(ev.event)) refreshCounts();
  });

  await Promise.all([loadHealth(), loadCounts(), loadRecent()]);
  loadActivity();
  const healthTimer = setInterval(loadHealth, 15000);
  return {
    unmount() {
      off();
      clearInterval(healthTimer);
    },
  };
}

function debounceMs(fn, ms) {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

function card(title, body, cls) {
  const id = `card-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { class: `card ${cls || ''}`, 'aria-labelledby': id }, h('h2', { id }, title), body);
}

function kv(k, v) {
  return [h('dt', null, k), h('dd', null, v)];
}

function describe(ev, names) {
  const sid = ev.sessionId;
  const name = names.get(sid) || shortId(sid);
  const link = sid ? h('a', { href: `/dashboard/sessions/${sid}` }, name) : null;
  const d = ev.data || {};
  switch (ev.event) {
    case 'created':
      return h('span', null, link, ' created');
    case 'status':
      return h('span', null, link, ` ${statusLabel(d.previous)} → `, statusBadge(d.status));
    case 'ended':
      return h('span', null, link, ' ended: ', statusBadge(d.status), d.reason ? ` (${d.reason})` : '');
    case 'approval':
      return h('span', null, link, ` asks permission: ${d.prompt || d.permission?.toolCall?.title || ''}`);
    case 'approval_resolved':
      return h('span', null, link, ` permission ${d.decision?.outcome || 'resolved'}`);
    case 'question':
      return h('span', null, link, ' asks a question');
    case 'stall':
      return h('span', null, link, ' stalled');
    case 'pipeline':
      return h('span', null, `Pipeline ${shortId(d.pipelineId)} ${d.status}`);
    default:
      return h('span', null, link, ` ${ev.event}`);
  }
}

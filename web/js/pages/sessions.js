// Sessions: filter by status and text, paginated, bulk kill, live updates from the global stream.

import { h, put, statusBadge, statusLabel, fmtAgo, shortId, STATUSES, LIVE, ENDED, perFrame } from '../dom.js';
import { get, del, api, qs, pool, ApiError } from '../api.js';
import { confirmDialog } from '../dialogs.js';

const GROUPS = { active: LIVE, waiting: new Set(['permission_prompt', 'asking']), ended: ENDED };
const PAGE_SIZES = [25, 50, 100];

export async function mount(main, ctx) {
  ctx.title('Sessions');
  const params = new URLSearchParams(location.search);
  const st = {
    all: new Map(), // id -> SessionInfo (all visible sessions)
    status: params.get('status') || '',
    q: params.get('q') || '',
    page: Math.max(1, Number(params.get('page')) || 1),
    size: PAGE_SIZES.includes(Number(params.get('size'))) ? Number(params.get('size')) : 25,
    selected: new Set(),
    loaded: false,
    error: null,
  };
  const search = document.getElementById('search');
  if (search && st.q) search.value = st.q;

  const statusSel = h('select', { id: 'f-status', onchange: () => { st.status = statusSel.value; st.page = 1; sync(); } },
    h('option', { value: '' }, 'All statuses'),
    h('option', { value: 'active' }, 'Active (live)'),
    h('option', { value: 'waiting' }, 'Waiting for input'),
    h('option', { value: 'ended' }, 'Ended'),
    h('optgroup', { label: 'Status' }, STATUSES.map((s) => h('option', { value: s }, statusLabel(s)))));
  statusSel.value = st.status;
  const text = h('input', {
    id: 'f-text', type: 'search', value: st.q, placeholder: 'Name, id, work dir, agent…', autocomplete: 'off',
    oninput: () => { st.q = text.value.trim(); st.page = 1; sync(); },
  });
  const sizeSel = h('select', { id: 'f-size', onchange: () => { st.size = Number(sizeSel.value); st.page = 1; sync(); } },
    PAGE_SIZES.map((n) => h('option', { value: n, selected: n === st.size }, `${n} per page`)));
  const killBtn = h('button', { class: 'btn danger', id: 'bulk-kill', disabled: true, onclick: () => bulkKill() }, 'Kill selected');
  const selAll = h('input', { type: 'checkbox', id: 'sel-all', 'aria-label': 'Select all sessions on this page', onchange: () => {
    for (const s of pageRows()) if (LIVE.has(s.status)) { if (selAll.checked) st.selected.add(s.id); else st.selected.delete(s.id); }
    render();
  } });
  const tbody = h('tbody');
  const summary = h('p', { class: 'muted', role: 'status', id: 'list-summary' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pagination' });

  put(main, h('section', { class: 'page page-sessions' },
    h('div', { class: 'page-head' }, h('h1', null, 'Sessions')),
    h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' },
      h('div', { class: 'field inline' }, h('label', { for: 'f-status' }, 'Status'), statusSel),
      h('div', { class: 'field inline grow' }, h('label', { for: 'f-text' }, 'Filter'), text),
      h('div', { class: 'field inline' }, h('label', { for: 'f-size' }, 'Page size'), sizeSel),
      h('div', { class: 'spacer' }),
      killBtn),
    summary,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'table sessions-table' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col', class: 'col-check' }, selAll),
          ...['Session', 'Status', 'Agent', 'Work dir', 'Created', 'Last activity', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Actions'))))),
        tbody)),
    pager));

  function matches(s) {
    if (st.status) {
      const g = GROUPS[st.status];
      if (g ? !g.has(s.status) : s.status !== st.status) return false;
    }
    if (st.q) {
      const q = st.q.toLowerCase();
      const hay = `${s.name} ${s.id} ${s.workDir} ${s.agent} ${s.title || ''} ${s.statusText || ''} ${s.model || ''}`.toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  function filtered() {
    return [...st.all.values()].filter(matches).sort((a, b) => b.createdAt - a.createdAt);
  }

  function pageRows() {
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / st.size));
    if (st.page > pages) st.page = pages;
    return rows.slice((st.page - 1) * st.size, st.page * st.size);
  }

  function sync() {
    const p = new URLSearchParams();
    if (st.status) p.set('status', st.status);
    if (st.q) p.set('q', st.q);
    if (st.page > 1) p.set('page', String(st.page));
    if (st.size !== 25) p.set('size', String(st.size));
    const s = p.toString();
    history.replaceState(null, '', `/dashboard/sessions${s ? `?${s}` : ''}`);
    render();
  }

  const render = perFrame(() => {
    if (!st.loaded) {
      put(tbody, h('tr', null, h('td', { colspan: 8, class: 'muted' }, st.error ? `Cannot load sessions: ${st.error}` : 'Loading…')));
      return;
    }
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / st.size));
    if (st.page > pages) st.page = pages;
    const visible = rows.slice((st.page - 1) * st.size, st.page * st.size);
    for (const id of [...st.selected]) if (!st.all.has(id) || !LIVE.has(st.all.get(id).status)) st.selected.delete(id);
    put(summary, rows.length === st.all.size
      ? `${rows.length} session${rows.length === 1 ? '' : 's'}`
      : `${rows.length} of ${st.all.size} sessions match`);
    put(tbody, visible.length === 0
      ? h('tr', null, h('td', { colspan: 8, class: 'empty-cell' }, st.all.size === 0
        ? ['No sessions yet. ', h('button', { class: 'btn link', onclick: () => ctx.openNewSession() }, 'Create one')]
        : 'No session matches the filters.'))
      : visible.map((s) => row(s)));
    const live = visible.filter((s) => LIVE.has(s.status));
    selAll.checked = live.length > 0 && live.every((s) => st.selected.has(s.id));
    selAll.disabled = live.length === 0;
    killBtn.disabled = st.selected.size === 0;
    put(killBtn, st.selected.size ? `Kill selected (${st.selected.size})` : 'Kill selected');
    put(pager,
      h('button', { class: 'btn', disabled: st.page <= 1, onclick: () => { st.page -= 1; sync(); }, 'aria-label': 'Previous page' }, '‹ Prev'),
      h('span', { class: 'page-no', 'aria-current': 'page' }, `Page ${st.page} of ${pages}`),
      h('button', { class: 'btn', disabled: st.page >= pages, onclick: () => { st.page += 1; sync(); }, 'aria-label': 'Next page' }, 'Next ›'));
  });

  function row(s) {
    const live = LIVE.has(s.status);
    const cb = h('input', {
      type: 'checkbox', checked: st.selected.has(s.id), disabled: !live, 'aria-label': `Select ${s.name}`,
      onchange: () => { if (cb.checked) st.selected.add(s.id); else st.selected.delete(s.id); render(); },
    });
    return h('tr', { dataset: { sessionId: s.id, status: s.status } },
      h('td', { class: 'col-check' }, cb),
      h('td', { class: 'col-name' }, h('a', { href: `/dashboard/sessions/${s.id}` }, s.name),
        h('div', { class: 'muted mono small' }, shortId(s.id), s.title ? ` · ${s.title}` : '')),
      h('td', null, statusBadge(s.status), s.paused ? h('span', { class: 'tag' }, 'paused') : null),
      h('td', null, s.agent),
      h('td', { class: 'mono ellipsis', title: s.workDir }, s.workDir),
      h('td', { title: new Date(s.createdAt).toLocaleString() }, fmtAgo(s.createdAt)),
      h('td', null, fmtAgo(s.lastActivity)),
      h('td', { class: 'col-actions' }, live
        ? h('button', { class: 'btn small danger', dataset: { kill: s.id }, 'aria-label': `Kill ${s.name}`, onclick: () => killOne(s) }, 'Kill')
        : null));
  }

  async function killOne(s) {
    const ok = await confirmDialog({ title: `Kill ${s.name}?`, body: 'The agent is stopped; the transcript is kept.', confirmLabel: 'Kill', danger: true });
    if (!ok) return;
    try {
      const r = await del(`/v1/sessions/${s.id}`);
      patch(s.id, { status: r.status || 'killed' });
      ctx.toast(`Killed ${s.name}`);
    } catch (e) {
      ctx.errorToast(e, `Kill ${s.name}`);
    }
  }

  async function bulkKill() {
    const ids = [...st.selected];
    if (!ids.length) return;
    const ok = await confirmDialog({
      title: `Kill ${ids.length} session${ids.length === 1 ? '' : 's'}?`,
      body: 'Their agents are stopped; transcripts are kept.',
      confirmLabel: `Kill ${ids.length}`,
      danger: true,
    });
    if (!ok) return;
    let killed = 0;
    const failed = [];
    try {
      const r = await api('DELETE', '/v1/sessions/batch', { ids });
      killed = r.deleted ?? ids.length;
      for (const id of [...(r.notFound || []), ...(r.forbidden || [])]) failed.push(id);
    } catch (e) {
      // Servers without the batch route: one DELETE per session.
      if (!(e instanceof ApiError) || !(e.status === 404 || e.status === 405 || e.code === 'INVALID_SESSION_ID')) {
        ctx.errorToast(e, 'Bulk kill');
        return;
      }
      await pool(ids, 4, async (id) => {
        try {
          await del(`/v1/sessions/${id}`);
          killed += 1;
          patch(id, { status: 'killed' });
        } catch {
          failed.push(id);
        }
      });
    }
    st.selected.clear();
    ctx.toast(`Killed ${killed} session${killed === 1 ? '' : 's'}${failed.length ? `; ${failed.length} failed` : ''}`, failed.length ? 'error' : 'info');
    load();
  }

  function patch(id, fields) {
    const s = st.all.get(id);
    if (!s) return;
    Object.assign(s, fields);
    render();
  }

  async function load() {
    try {
      const first = await get(`/v1/sessions${qs({ limit: 100, page: 1 })}`);
      const all = [...first.sessions];
      const pages = first.pagination?.totalPages || 1;
      if (pages > 1) {
        const rest = await pool(Array.from({ length: pages - 1 }, (_, i) => i + 2), 4,
          (p) => get(`/v1/sessions${qs({ limit: 100, page: p })}`));
        for (const r of rest) all.push(...r.sessions);
      }
      st.all = new Map(all.map((s) => [s.id, s]));
      st.loaded = true;
      st.error = null;
    } catch (e) {
      st.error = e.message;
    }
    render();
  }

  const off = ctx.onGlobal((ev) => {
    const id = ev.sessionId;
    if (!id) return;
    const d = ev.data || {};
    switch (ev.event) {
      case 'created':
        if (d.session) st.all.set(id, d.session);
        render();
        break;
      case 'status':
        patch(id, { status: d.status, statusSince: Date.parse(ev.timestamp), lastActivity: Date.parse(ev.timestamp) });
        break;
      case 'ended':
        patch(id, { status: d.status });
        break;
      case 'config':
        patch(id, Object.fromEntries(Object.entries(d).filter(([k]) => ['name', 'title', 'model', 'permissionMode'].includes(k))));
        break;
      case 'paused':
        patch(id, { paused: true });
        break;
      case 'resumed':
        patch(id, { paused: false });
        break;
      case 'connected':
        break;
      default:
        break;
    }
  });
  // After a reconnect the stream replays what was missed; a periodic refresh also catches
  // what the global stream does not carry (e.g. lastActivity of message-only changes).
  const timer = setInterval(() => { if (!document.hidden) load(); }, 30000);

  render();
  await load();
  return {
    unmount() {
      off();
      clearInterval(timer);
    },
    search(q) {
      st.q = q;
      text.value = q;
      st.page = 1;
      sync();
    },
  };
}

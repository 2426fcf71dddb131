// Audit: filters, cursor paging, export (CSV / NDJSON), chain verification.

import { h, put, fmtTime, shortId } from '../dom.js';
import { get, qs, ApiError } from '../api.js';
import { unavailable, forbidden } from './common.js';

const OUTCOMES = ['', 'success', 'denied', 'failure'];

export async function mount(main, ctx) {
  ctx.title('Audit');
  const f = {
    actor: h('input', { id: 'a-actor', autocomplete: 'off', placeholder: 'principal id' }),
    action: h('input', { id: 'a-action', autocomplete: 'off', placeholder: 'e.g. session.* or permission.approve' }),
    sessionId: h('input', { id: 'a-session', autocomplete: 'off', placeholder: 'session uuid' }),
    outcome: h('select', { id: 'a-outcome' }, OUTCOMES.map((o) => h('option', { value: o }, o || 'Any'))),
    from: h('input', { id: 'a-from', type: 'datetime-local' }),
    to: h('input', { id: 'a-to', type: 'datetime-local' }),
  };
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const verifyOut = h('div', { class: 'verify-out', role: 'status' });
  const exportCsv = h('a', { class: 'btn', id: 'export-csv', download: true }, 'Export CSV');
  const exportNd = h('a', { class: 'btn', id: 'export-ndjson', download: true }, 'Export NDJSON');
  const form = h('form', { class: 'filters', 'aria-label': 'Audit filters', onsubmit: (e) => { e.preventDefault(); load(true); } },
    field('a-actor', 'Actor', f.actor), field('a-action', 'Action', f.action), field('a-session', 'Session', f.sessionId),
    field('a-outcome', 'Outcome', f.outcome), field('a-from', 'From', f.from), field('a-to', 'To', f.to),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Apply')));
  const toolbar = h('div', { class: 'toolbar' }, exportCsv, exportNd,
    h('button', { class: 'btn', id: 'verify-chain', onclick: () => verify() }, 'Verify chain'), verifyOut);
  put(main, h('section', { class: 'page page-audit' },
    h('div', { class: 'page-head' }, h('h1', null, 'Audit log')), form, toolbar, body));

  let records = [];
  let nextCursor = null;

  function filters() {
    const iso = (v) => (v ? new Date(v).toISOString() : undefined);
    return {
      actor: f.actor.value.trim(), action: f.action.value.trim(), sessionId: f.sessionId.value.trim(),
      outcome: f.outcome.value, from: iso(f.from.value), to: iso(f.to.value),
    };
  }

  function updateExports() {
    exportCsv.href = `/v1/audit${qs({ ...filters(), format: 'csv' })}`;
    exportNd.href = `/v1/audit${qs({ ...filters(), format: 'ndjson' })}`;
  }

  async function load(reset) {
    updateExports();
    if (reset) {
      records = [];
      nextCursor = null;
    }
    let r;
    try {
      r = await get(`/v1/audit${qs({ ...filters(), reverse: 'true', limit: 100, cursor: nextCursor ?? undefined })}`);
    } catch (e) {
      toolbar.hidden = e instanceof ApiError && (e.status === 404 || e.status === 403);
      form.hidden = toolbar.hidden;
      if (e instanceof ApiError && e.status === 404) return put(body, unavailable('Audit records', 'GET /v1/audit', e));
      if (e instanceof ApiError && e.status === 403) return put(body, forbidden('the audit log', e));
      return put(body, h('p', { class: 'bad' }, `Cannot load the audit log: ${e.message}`));
    }
    records = records.concat(r.records || []);
    nextCursor = r.pagination?.hasMore ? r.pagination.nextCursor : null;
    return put(body,
      h('p', { class: 'muted', role: 'status' }, `${records.length} of ${r.total ?? r.count ?? records.length} records`,
        r.chain?.lastSeq ? ` · chain head #${r.chain.lastSeq} ${String(r.chain.lastHash || '').slice(0, 12)}…` : ''),
      records.length === 0 ? h('div', { class: 'empty' }, h('p', null, 'No audit records match.'))
        : h('div', { class: 'table-wrap' }, h('table', { class: 'table audit-table' },
          h('thead', null, h('tr', null, ...['#', 'Time', 'Actor', 'Action', 'Target', 'Outcome', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', null, records.map((a) => h('tr', { dataset: { seq: a.seq } },
            h('td', { class: 'mono' }, a.seq),
            h('td', null, fmtTime(a.ts)),
            h('td', null, a.actorName || a.actor, a.role ? h('span', { class: 'muted' }, ` ${a.role}`) : null),
            h('td', { class: 'mono' }, a.action),
            h('td', null, a.sessionId ? h('a', { href: `/dashboard/sessions/${a.sessionId}` }, shortId(a.sessionId))
              : a.target ? `${a.target.type} ${a.target.id ?? ''}` : '—'),
            h('td', null, h('span', { class: `outcome outcome-${a.outcome}` }, a.outcome)),
            h('td', { class: 'ellipsis', title: a.detail || '' }, a.detail || '')))))),
      nextCursor !== null ? h('button', { class: 'btn', onclick: () => load(false) }, 'Load more') : null);
  }

  async function verify() {
    put(verifyOut, 'Verifying…');
    try {
      const v = await get('/v1/audit/verify');
      put(verifyOut, v.valid
        ? h('span', { class: 'ok' }, `✓ Chain valid: ${v.checked} records checked, head #${v.lastSeq}`)
        : h('span', { class: 'bad' }, `✕ Chain broken at #${v.brokenAt?.seq} (${v.brokenAt?.reason})`));
    } catch (e) {
      put(verifyOut, h('span', { class: 'bad' }, `Verification unavailable: ${e.message}`));
    }
  }

  await load(true);
  return {};
}

function field(id, label, control) {
  return h('div', { class: 'field inline' }, h('label', { for: id }, label), control);
}

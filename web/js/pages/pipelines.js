// Pipelines: list and detail (GET /v1/pipelines, /v1/pipelines/:id, POST …/cancel).

import { h, put, fmtAgo, fmtTime, shortId, perFrame } from '../dom.js';
import { get, post, ApiError } from '../api.js';
import { confirmDialog } from '../dialogs.js';
import { unavailable, forbidden, kv } from './common.js';

export async function mount(main, ctx, [id]) {
  return id ? detail(main, ctx, id) : list(main, ctx);
}

function pill(status) {
  return h('span', { class: `badge pl-${status}`, dataset: { status } }, status);
}

async function list(main, ctx) {
  ctx.title('Pipelines');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  put(main, h('section', { class: 'page page-pipelines' },
    h('div', { class: 'page-head' }, h('h1', null, 'Pipelines')), body));
  async function load() {
    let items;
    try {
      items = await get('/v1/pipelines');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return put(body, unavailable('Pipelines', 'GET /v1/pipelines', e));
      if (e instanceof ApiError && e.status === 403) return put(body, forbidden('pipelines', e));
      return put(body, h('p', { class: 'bad' }, `Cannot load pipelines: ${e.message}`));
    }
    items = Array.isArray(items) ? items : items?.pipelines || [];
    if (!items.length) {
      return put(body, h('div', { class: 'empty' }, h('h2', null, 'No pipelines yet'),
        h('p', null, 'A pipeline runs prompts as stages with dependencies. Create one with ',
          h('code', null, 'ag pipeline create'), ' or ', h('code', null, 'POST /v1/pipelines'), '.')));
    }
    items.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    return put(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', null, h('tr', null, ...['Pipeline', 'Status', 'Stages', 'Work dir', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, items.map((p) => {
        const done = (p.stages || []).filter((s) => s.status === 'completed').length;
        return h('tr', { dataset: { pipelineId: p.id } },
          h('td', null, h('a', { href: `/dashboard/pipelines/${p.id}` }, p.name), h('span', { class: 'muted mono' }, ` ${shortId(p.id)}`)),
          h('td', null, pill(p.status)),
          h('td', null, `${done}/${(p.stages || []).length} completed`),
          h('td', { class: 'mono ellipsis' }, p.workDir || '—'),
          h('td', null, fmtAgo(p.createdAt)));
      })))));
  }
  const reload = perFrame(load);
  const off = ctx.onGlobal((ev) => { if (ev.event === 'pipeline') reload(); });
  await load();
  return { unmount: off };
}

async function detail(main, ctx, id) {
  ctx.title('Pipeline');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const head = h('h1', null, 'Pipeline');
  put(main, h('section', { class: 'page page-pipeline' },
    h('div', { class: 'crumbs' }, h('a', { href: '/dashboard/pipelines' }, '‹ Pipelines')),
    h('div', { class: 'page-head' }, head), body));
  async function load() {
    let p;
    try {
      p = await get(`/v1/pipelines/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && /No route/i.test(e.message)) return put(body, unavailable('Pipelines', 'GET /v1/pipelines/:id', e));
      return put(body, h('p', { class: 'bad' }, e.status === 404 ? `No pipeline ${id}.` : `Cannot load the pipeline: ${e.message}`));
    }
    ctx.title(p.name);
    put(head, p.name, ' ', pill(p.status));
    const running = p.status === 'running';
    return put(body,
      h('dl', { class: 'kv' }, kv('Id', h('span', { class: 'mono' }, p.id)), kv('Work dir', p.workDir || '—'),
        kv('Created', fmtTime(p.createdAt)), kv('Finished', p.finishedAt ? fmtTime(p.finishedAt) : '—'), kv('On failure', p.onFailure || 'stop')),
      running ? h('div', { class: 'actions' }, h('button', {
        class: 'btn danger',
        onclick: async () => {
          if (!await confirmDialog({ title: `Cancel ${p.name}?`, body: 'Pending stages are skipped, running turns interrupted.', confirmLabel: 'Cancel pipeline', danger: true })) return;
          try {
            await post(`/v1/pipelines/${p.id}/cancel`, {});
            load();
          } catch (e) {
            ctx.errorToast(e, 'Cancel');
          }
        },
      }, 'Cancel pipeline')) : null,
      h('h2', null, 'Stages'),
      h('ol', { class: 'stages' }, (p.stages || []).map((s) => h('li', { class: `stage st-${s.status}` },
        h('div', { class: 'stage-head' }, h('strong', null, s.name), ' ', pill(s.status),
          s.sessionId ? [' ', h('a', { href: `/dashboard/sessions/${s.sessionId}` }, `session ${shortId(s.sessionId)}`)] : null,
          s.dependsOn?.length ? h('span', { class: 'muted' }, ` after ${s.dependsOn.join(', ')}`) : null),
        s.error ? h('div', { class: 'bad' }, s.error) : null,
        s.output ? h('details', null, h('summary', null, 'Output'), h('pre', null, s.output)) : null))));
  }
  const reload = perFrame(load);
  const off = ctx.onGlobal((ev) => { if (ev.event === 'pipeline' && ev.data?.pipelineId === id) reload(); });
  await load();
  return { unmount: off };
}

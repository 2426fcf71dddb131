// Users: API keys — create with a role, revoke, rotate (GET/POST /v1/auth/keys, DELETE
// /v1/auth/keys/:id, POST /v1/auth/keys/:id/rotate). Secrets are shown once, never stored.

import { h, put, fmtAgo, fmtTime } from '../dom.js';
import { get, post, del, ApiError } from '../api.js';
import { confirmDialog, secretDialog, field } from '../dialogs.js';
import { unavailable, forbidden } from './common.js';

const ROLES = ['viewer', 'operator', 'admin'];
const PERMS = ['create', 'send', 'approve', 'reject', 'kill', 'audit'];

export async function mount(main, ctx) {
  ctx.title('Users');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const err = h('div', { class: 'form-error', role: 'alert' });
  const createForm = h('form', {
    class: 'card form create-key', 'aria-labelledby': 'create-key-title',
    onsubmit: async (e) => {
      e.preventDefault();
      const fd = new FormData(createForm);
      const req = { name: String(fd.get('name') || '').trim(), role: String(fd.get('role')) };
      const ttl = Number(fd.get('ttlDays'));
      if (ttl > 0) req.ttlDays = ttl;
      const perms = PERMS.filter((p) => fd.get(`perm-${p}`));
      if (perms.length) req.permissions = perms;
      if (!req.name) {
        put(err, 'A name is required.');
        return;
      }
      put(err);
      try {
        const k = await post('/v1/auth/keys', req);
        createForm.reset();
        await secretDialog({ title: `API key “${k.name}” created`, secret: k.key });
        load();
      } catch (ex) {
        put(err, ex instanceof ApiError ? `${ex.message} (${ex.code})` : String(ex));
      }
    },
  },
  h('h2', { id: 'create-key-title' }, 'Create an API key'),
  h('div', { class: 'form-row' },
    field('k-name', 'Name', h('input', { id: 'k-name', name: 'name', maxlength: 100, autocomplete: 'off', placeholder: 'ci-bot' })),
    field('k-role', 'Role', h('select', { id: 'k-role', name: 'role' }, ROLES.map((r) => h('option', { value: r }, r)))),
    field('k-ttl', 'Expires after (days)', h('input', { id: 'k-ttl', name: 'ttlDays', type: 'number', min: 1, placeholder: 'never' }))),
  h('fieldset', { class: 'perms' }, h('legend', null, 'Extra permissions (optional; replaces the role defaults)'),
    PERMS.map((p) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: `perm-${p}` }), ` ${p}`))),
  err,
  h('div', { class: 'dialog-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Create key')));

  put(main, h('section', { class: 'page page-users' },
    h('div', { class: 'page-head' }, h('h1', null, 'Users & API keys')), body));

  async function load() {
    let keys;
    try {
      keys = await get('/v1/auth/keys');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return put(body, unavailable('API keys', 'GET /v1/auth/keys', e));
      if (e instanceof ApiError && e.status === 403) return put(body, forbidden('API keys', e));
      return put(body, h('p', { class: 'bad' }, `Cannot load API keys: ${e.message}`));
    }
    keys = Array.isArray(keys) ? keys : keys?.keys || [];
    return put(body, createForm, h('h2', null, 'Keys'),
      keys.length === 0 ? h('div', { class: 'empty' }, h('p', null, 'No API keys. Creating the first key turns authentication on.'))
        : h('div', { class: 'table-wrap' }, h('table', { class: 'table keys-table' },
          h('thead', null, h('tr', null, ...['Name', 'Id', 'Role', 'Permissions', 'Tenant', 'Created', 'Last used', 'Expires', ''].map((t) => h('th', { scope: 'col' }, t || h('span', { class: 'sr-only' }, 'Actions'))))),
          h('tbody', null, keys.map((k) => h('tr', { dataset: { keyId: k.id } },
            h('td', null, k.name), h('td', { class: 'mono' }, k.id), h('td', null, k.role),
            h('td', null, (k.permissions || []).join(', ') || '—'), h('td', null, k.tenantId),
            h('td', null, fmtTime(k.createdAt)), h('td', null, k.lastUsedAt ? fmtAgo(k.lastUsedAt) : 'never'),
            h('td', null, k.expiresAt ? fmtTime(k.expiresAt) : 'never'),
            h('td', { class: 'col-actions' },
              h('button', { class: 'btn small', 'aria-label': `Rotate ${k.name}`, onclick: () => rotate(k) }, 'Rotate'),
              h('button', { class: 'btn small danger', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k) }, 'Revoke'))))))));
  }

  async function rotate(k) {
    if (!await confirmDialog({ title: `Rotate ${k.name}?`, body: 'A new secret is issued; the old one stops working.', confirmLabel: 'Rotate' })) return;
    try {
      const r = await post(`/v1/auth/keys/${k.id}/rotate`, {});
      await secretDialog({ title: `New secret for “${k.name}”`, secret: r.key });
      load();
    } catch (e) {
      ctx.errorToast(e, 'Rotate');
    }
  }

  async function revoke(k) {
    if (!await confirmDialog({ title: `Revoke ${k.name}?`, body: 'Clients using this key are refused from now on.', confirmLabel: 'Revoke', danger: true })) return;
    try {
      await del(`/v1/auth/keys/${k.id}`);
      ctx.toast(`Revoked ${k.name}`);
      load();
    } catch (e) {
      ctx.errorToast(e, 'Revoke');
    }
  }

  await load();
  return {};
}

// Shared bits of the pages.

import { h } from '../dom.js';

/** The honest empty state of a feature whose API this server does not offer (yet). */
export function unavailable(what, route, err) {
  return h('div', { class: 'empty unavailable', role: 'note', dataset: { unavailable: route } },
    h('h2', null, `${what} are not available on this server`),
    h('p', null, 'The server answered ', h('code', null, `${err?.status ?? 404} ${err?.code ?? 'NOT_FOUND'}`),
      ' for ', h('code', null, route), '. ',
      err?.code === 'FEATURE_DISABLED' ? 'The feature is switched off in the server configuration.'
        : 'This server version does not provide this API yet; the page fills in as soon as it does.'));
}

export function forbidden(what, err) {
  return h('div', { class: 'empty', role: 'note' },
    h('h2', null, `You cannot see ${what}`),
    h('p', null, err?.message || 'Your role lacks the permission for this page.'));
}

export function kv(k, v) {
  return [h('dt', null, k), h('dd', null, v)];
}

// Sign in: the pasted token is sent once to POST /v1/auth/verify, which answers with an
// HttpOnly, SameSite=Strict session cookie. The token is never stored by the page.

import { h, put } from '../dom.js';
import { api, get, ApiError } from '../api.js';

export async function mount(main, ctx) {
  ctx.title('Sign in');
  const err = h('div', { class: 'form-error', role: 'alert', id: 'login-error' });
  const token = h('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', autofocus: true });
  const submit = h('button', { type: 'submit', class: 'btn primary', id: 'login-submit' }, 'Sign in');
  const sso = h('div', { class: 'sso' });
  const form = h('form', {
    class: 'login-form',
    onsubmit: async (e) => {
      e.preventDefault();
      const value = token.value.trim();
      if (!value) {
        put(err, 'Paste an access token (the master token or an API key).');
        return;
      }
      submit.disabled = true;
      put(err);
      try {
        await api('POST', '/v1/auth/verify', { token: value }, { quiet401: true });
        token.value = '';
        await ctx.loggedIn();
      } catch (ex) {
        token.value = '';
        submit.disabled = false;
        if (ex instanceof ApiError && ex.status === 404) {
          put(err, 'This server does not offer dashboard sign-in (POST /v1/auth/verify answered 404). ',
            'On a loopback bind without credentials the dashboard works without signing in.');
        } else if (ex instanceof ApiError && ex.status === 401) {
          put(err, 'The token was not accepted. Check it and try again.');
        } else if (ex instanceof ApiError && ex.status === 429) {
          put(err, 'Too many failed attempts. Wait a minute and try again.');
        } else {
          put(err, `Sign-in failed: ${ex.message}`);
        }
        token.focus();
      }
    },
  },
  h('h1', null, 'Sign in to Aegis'),
  h('p', { class: 'muted' }, 'Paste the server token or an API key. It is exchanged for a session cookie and is not kept by this page.'),
  h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Access token'), token),
  err,
  h('div', { class: 'dialog-actions' }, submit),
  sso);
  put(main, h('section', { class: 'page page-login' }, form));
  token.focus();
  try {
    const cfg = await get('/v1/auth/config', { quiet401: true });
    if (cfg?.dashboardSso || cfg?.oidc) {
      put(sso, h('p', { class: 'or' }, 'or'), h('a', { class: 'btn', href: '/auth/login', 'data-external': '' }, 'Sign in with SSO'));
    }
  } catch {
    /* no SSO information: token sign-in only */
  }
  return {};
}

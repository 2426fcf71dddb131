// Modal dialogs on <dialog>: focus is trapped by the browser, Escape cancels, focus returns to
// where it was.

import { h, put } from './dom.js';
import { api, get, ApiError } from './api.js';

let openCount = 0;
export const dialogOpen = () => openCount > 0;

/** Show a modal built by `build(close)`; resolves with the value passed to close(). */
export function modal(build, { label, className } = {}) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    const dlg = h('dialog', { class: ['modal', className], 'aria-label': label });
    let done = false;
    const close = (value) => {
      if (done) return;
      done = true;
      openCount -= 1;
      dlg.close();
      dlg.remove();
      if (previous && previous.isConnected && typeof previous.focus === 'function') previous.focus();
      resolve(value);
    };
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(undefined);
    });
    put(dlg, build(close));
    document.body.append(dlg);
    openCount += 1;
    dlg.showModal();
    const auto = dlg.querySelector('[autofocus]');
    if (auto) auto.focus();
  });
}

/** Ask for confirmation; Enter confirms (the confirm button has focus), Escape cancels. */
export function confirmDialog({ title, body, confirmLabel = 'Confirm', danger = false }) {
  return modal((close) => h('form', {
    method: 'dialog',
    class: 'dialog-body',
    onsubmit: (e) => {
      e.preventDefault();
      close(true);
    },
  },
  h('h2', { id: 'confirm-title' }, title),
  body ? h('div', { class: 'dialog-text' }, body) : null,
  h('div', { class: 'dialog-actions' },
    h('button', { type: 'button', class: 'btn', onclick: () => close(false) }, 'Cancel'),
    h('button', { type: 'submit', class: danger ? 'btn danger' : 'btn primary', autofocus: true, 'data-confirm': '' }, confirmLabel))),
  { label: title, className: 'confirm' }).then((v) => v === true);
}

export function alertDialog({ title, body }) {
  return modal((close) => h('div', { class: 'dialog-body' },
    h('h2', null, title),
    h('div', { class: 'dialog-text' }, body),
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn primary', autofocus: true, onclick: () => close() }, 'Close'))),
  { label: title });
}

export const SHORTCUTS = [
  ['?', 'Show keyboard shortcuts'],
  ['Ctrl+K or ⌘K', 'Focus search'],
  ['Ctrl+N or ⌘N', 'New session'],
  ['G then O', 'Go to Overview'],
  ['G then S', 'Go to Sessions'],
  ['G then P', 'Go to Pipelines'],
  ['G then A', 'Go to Audit'],
  ['G then U', 'Go to Users'],
  ['Escape', 'Close modal / cancel'],
  ['A', 'Approve the pending permission (session page, asks to confirm)'],
  ['R', 'Reject the pending permission (session page, asks to confirm)'],
];

export function helpDialog() {
  return modal((close) => h('div', { class: 'dialog-body' },
    h('h2', null, 'Keyboard shortcuts'),
    h('table', { class: 'shortcuts' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Shortcut'), h('th', { scope: 'col' }, 'Action'))),
      h('tbody', null, SHORTCUTS.map(([k, v]) => h('tr', null,
        h('td', null, k.split(' ').map((p) => (['then', 'or'].includes(p) ? ` ${p} ` : h('kbd', null, p)))),
        h('td', null, v))))),
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn primary', autofocus: true, onclick: () => close() }, 'Close'))),
  { label: 'Keyboard shortcuts', className: 'help' });
}

const MODES = ['default', 'acceptEdits', 'plan', 'bypassPermissions', 'dontAsk', 'auto'];
const LAST_WORKDIR = 'aegis.lastWorkDir'; // a preference, not a credential

/** The New session dialog; resolves with the created session or undefined. */
export async function newSessionDialog({ workDirs = [] } = {}) {
  let agents = [];
  try {
    agents = (await get('/v1/agents')).agents || [];
  } catch {
    agents = [];
  }
  const lastWd = localStorage.getItem(LAST_WORKDIR) || workDirs[0] || '';
  return modal((close) => {
    const err = h('div', { class: 'form-error', role: 'alert', id: 'ns-error' });
    const submit = h('button', { type: 'submit', class: 'btn primary', id: 'ns-create' }, 'Create session');
    const form = h('form', {
      class: 'dialog-body form',
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const body = { workDir: String(fd.get('workDir') || '').trim() };
        if (!body.workDir) {
          put(err, 'Work directory is required.');
          form.elements.workDir.focus();
          return;
        }
        for (const k of ['name', 'prompt', 'agent', 'model', 'permissionMode']) {
          const v = String(fd.get(k) || '').trim();
          if (v) body[k] = v;
        }
        if (fd.get('fresh')) body.reuse = false;
        submit.disabled = true;
        put(err);
        try {
          const s = await api('POST', '/v1/sessions', body);
          localStorage.setItem(LAST_WORKDIR, body.workDir);
          close(s);
        } catch (ex) {
          submit.disabled = false;
          put(err, ex instanceof ApiError ? `${ex.message}${ex.code ? ` (${ex.code})` : ''}` : String(ex));
        }
      },
    },
    h('h2', null, 'New session'),
    field('ns-workdir', 'Work directory', h('input', {
      id: 'ns-workdir', name: 'workDir', required: true, autofocus: true, value: lastWd,
      list: 'ns-workdirs', autocomplete: 'off', spellcheck: 'false', placeholder: '/path/to/project',
    })),
    h('datalist', { id: 'ns-workdirs' }, workDirs.map((w) => h('option', { value: w }))),
    field('ns-prompt', 'Prompt', h('textarea', { id: 'ns-prompt', name: 'prompt', rows: 4, placeholder: 'What should the agent do?' })),
    h('div', { class: 'form-row' },
      field('ns-agent', 'Agent', h('select', { id: 'ns-agent', name: 'agent' },
        agents.length ? agents.map((a) => h('option', { value: a.name, selected: a.default, disabled: a.available === false },
          `${a.name}${a.default ? ' (default)' : ''}${a.available === false ? ' — unavailable' : ''}`))
          : h('option', { value: '' }, 'Server default'))),
      field('ns-mode', 'Permission mode', h('select', { id: 'ns-mode', name: 'permissionMode' },
        h('option', { value: '' }, 'Server default'),
        MODES.map((m) => h('option', { value: m }, m))))),
    h('div', { class: 'form-row' },
      field('ns-model', 'Model', h('input', { id: 'ns-model', name: 'model', placeholder: 'default', autocomplete: 'off' })),
      field('ns-name', 'Name', h('input', { id: 'ns-name', name: 'name', placeholder: 'optional', autocomplete: 'off' }))),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'fresh', id: 'ns-fresh', checked: true }),
      ' Always start a new session (do not reuse an idle one)'),
    err,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'),
      submit));
    return form;
  }, { label: 'New session', className: 'new-session' });
}

export function field(id, label, control, hint) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('div', { class: 'hint' }, hint) : null);
}

/** Show a secret exactly once (API key creation / rotation). */
export function secretDialog({ title, secret, note }) {
  return modal((close) => {
    const input = h('input', { id: 'secret-value', readonly: true, value: secret, class: 'mono', spellcheck: 'false' });
    const copied = h('span', { class: 'muted', role: 'status' });
    return h('div', { class: 'dialog-body' },
      h('h2', null, title),
      h('p', null, note || 'Copy the key now: it is shown only once and the server keeps only a salted hash.'),
      field('secret-value', 'Key', input),
      h('div', { class: 'dialog-actions' },
        h('button', {
          type: 'button',
          class: 'btn',
          onclick: async () => {
            input.select();
            try {
              await navigator.clipboard.writeText(secret);
              put(copied, 'Copied.');
            } catch {
              put(copied, 'Select the text and copy it.');
            }
          },
        }, 'Copy'),
        copied,
        h('button', { type: 'button', class: 'btn primary', autofocus: true, onclick: () => close() }, 'Done')));
  }, { label: title });
}

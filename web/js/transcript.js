// Rendering of transcript entries (api §2.8): one element per entry, text only via text nodes.

import { h, fmtClock, fmtNum, fmtCost } from './dom.js';

const PLAN_ICON = { completed: '✓', in_progress: '◐', pending: '○' };

/**
 * @param {object} e  the entry (latest revision), or a placeholder `{entryId, placeholder:true}`
 * @param {object} ui  `{open: Set<string>, liveText(e) → string|null}` — remembered expansions
 */
export function renderEntry(e, ui) {
  if (!e || e.placeholder) {
    return h('div', { class: 'entry placeholder', dataset: { entryId: e?.entryId ?? '' }, 'aria-busy': 'true' },
      h('span', { class: 'skeleton' }), h('span', { class: 'sr-only' }, 'Loading entry'));
  }
  const base = {
    class: `entry kind-${e.kind}`,
    dataset: { entryId: e.entryId, kind: e.kind, revision: e.revision },
  };
  switch (e.kind) {
    case 'user_message':
      return h('article', base,
        meta('You', e, e.source && e.source !== 'api' ? e.source : null),
        h('div', { class: 'text' }, e.text));
    case 'agent_message': {
      const live = ui.liveText?.(e);
      const streaming = e.revision < 2 && !e.final;
      return h('article', { ...base, class: `${base.class}${streaming ? ' streaming' : ''}` },
        meta('Agent', e, streaming ? 'streaming…' : null),
        h('div', { class: 'text' }, live ?? e.text));
    }
    case 'agent_thought': {
      const key = `t${e.entryId}`;
      const live = ui.liveText?.(e);
      const d = h('details', { class: 'thought', open: ui.open.has(key) },
        h('summary', null, 'Thinking', h('span', { class: 'muted' }, ` · ${preview(live ?? e.text)}`)),
        h('div', { class: 'text' }, live ?? e.text));
      d.addEventListener('toggle', () => {
        if (d.open) ui.open.add(key);
        else ui.open.delete(key);
        ui.changed?.(e.entryId);
      });
      return h('article', base, d);
    }
    case 'tool_call':
      return h('article', base, toolCard(e, ui));
    case 'plan':
      return h('article', base,
        meta('Plan', e),
        h('ol', { class: 'plan' }, (e.entries || []).map((p) =>
          h('li', { class: `plan-${p.status}`, dataset: { status: p.status } },
            h('span', { class: 'plan-icon', 'aria-hidden': 'true' }, PLAN_ICON[p.status] || '○'),
            h('span', { class: 'sr-only' }, `${p.status.replace('_', ' ')}: `),
            h('span', null, p.content),
            p.priority ? h('span', { class: `prio prio-${p.priority}` }, p.priority) : null))));
    case 'permission': {
      const d = e.decision;
      const what = d ? `${d.outcome}${d.by ? ` by ${d.by}` : ''}${d.via ? ` via ${d.via}` : ''}` : e.status;
      return h('article', base,
        h('div', { class: `perm perm-${e.status}` },
          h('span', { class: 'perm-icon', 'aria-hidden': 'true' }, d?.outcome === 'approved' || d?.outcome === 'auto' ? '✓' : d ? '✕' : '?'),
          h('span', null, 'Permission: ', h('strong', null, e.title || 'tool call')),
          h('span', { class: 'muted' }, ` — ${what}`),
          d?.reason ? h('div', { class: 'muted' }, `Reason: ${d.reason}`) : null));
    }
    case 'question':
      return h('article', base,
        meta('Question', e, e.status),
        h('div', { class: 'text' }, e.message || e.text),
        e.answer !== null && e.answer !== undefined
          ? h('div', { class: 'muted' }, `Answer: ${typeof e.answer === 'string' ? e.answer : JSON.stringify(e.answer)}`) : null);
    case 'usage':
      return h('article', base,
        h('div', { class: 'usage-line' },
          h('span', { 'aria-hidden': 'true' }, 'Σ '),
          `${fmtNum(e.inputTokens)} in · ${fmtNum(e.outputTokens)} out`,
          e.cacheReadTokens ? ` · ${fmtNum(e.cacheReadTokens)} cache read` : '',
          e.costUsd !== null && e.costUsd !== undefined ? ` · ${fmtCost(e.costUsd)}` : '',
          h('span', { class: 'ts' }, fmtClock(e.timestamp))));
    case 'system':
    default:
      return h('article', { ...base, class: `${base.class}${e.subtype === 'error' ? ' sys-error' : ''}` },
        h('div', { class: 'sys-line' },
          h('span', null, e.text || e.subtype || e.kind),
          h('span', { class: 'ts' }, fmtClock(e.timestamp))));
  }
}

function meta(who, e, extra) {
  return h('div', { class: 'meta' },
    h('span', { class: 'who' }, who),
    extra ? h('span', { class: 'tag' }, extra) : null,
    h('span', { class: 'ts' }, fmtClock(e.timestamp)),
    h('span', { class: 'eid', 'aria-label': `entry ${e.entryId}` }, `#${e.entryId}`));
}

function preview(text) {
  const t = String(text || '').replace(/\s+/g, ' ').trim();
  return t.length > 80 ? `${t.slice(0, 80)}…` : t;
}

function toolCard(e, ui) {
  const key = `r${e.entryId}`;
  const body = [];
  for (const c of e.content || []) {
    if (c.type === 'diff') body.push(diffView(c));
    else if (c.type === 'text') body.push(h('pre', { class: 'tool-text' }, c.text));
    else if (c.type === 'terminal') body.push(h('div', { class: 'muted' }, `Terminal ${c.terminalId}`));
    else if (c.type === 'content' && c.content?.type === 'text') body.push(h('pre', { class: 'tool-text' }, c.content.text));
  }
  const raw = e.rawInput ?? null;
  let rawBlock = null;
  if (raw !== null) {
    rawBlock = h('details', { class: 'raw', open: ui.open.has(key) },
      h('summary', null, 'Input'),
      h('pre', null, JSON.stringify(raw, null, 2)));
    rawBlock.addEventListener('toggle', () => {
      if (rawBlock.open) ui.open.add(key);
      else ui.open.delete(key);
      ui.changed?.(e.entryId);
    });
  }
  const cmd = raw && typeof raw === 'object' && typeof raw.command === 'string' ? raw.command : null;
  return h('div', { class: `tool tool-${e.status}` },
    h('div', { class: 'tool-head' },
      h('span', { class: 'tool-kind' }, e.toolKind || 'tool'),
      h('span', { class: 'tool-title' }, e.title || e.toolName),
      h('span', { class: `pill pill-${e.status}`, dataset: { status: e.status } }, e.status.replace('_', ' ')),
      h('span', { class: 'ts' }, fmtClock(e.timestamp))),
    cmd ? h('pre', { class: 'tool-cmd' }, `$ ${cmd}`) : null,
    (e.locations || []).length
      ? h('ul', { class: 'locations' }, e.locations.map((l) => h('li', null, l.line ? `${l.path}:${l.line}` : l.path)))
      : null,
    body,
    rawBlock,
    e.truncated ? h('div', { class: 'muted' }, 'Input/output truncated (over 16 KiB)') : null);
}

// ---------------------------------------------------------------------------------------------
// Diffs: a line diff (LCS) for small texts, the two sides for large ones.

const MAX_LCS = 400 * 400;

export function diffLines(oldText, newText) {
  const a = oldText ? oldText.split('\n') : [];
  const b = newText ? newText.split('\n') : [];
  if (a.length && a[a.length - 1] === '') a.pop();
  if (b.length && b[b.length - 1] === '') b.pop();
  if (a.length * b.length > MAX_LCS) {
    return [...a.map((t) => ['-', t]), ...b.map((t) => ['+', t])];
  }
  const n = a.length;
  const m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push([' ', a[i]]);
      i++;
      j++;
    } else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(['-', a[i++]]);
    else out.push(['+', b[j++]]);
  }
  while (i < n) out.push(['-', a[i++]]);
  while (j < m) out.push(['+', b[j++]]);
  return out;
}

function diffView(c) {
  const lines = diffLines(c.oldText, c.newText);
  const added = lines.filter((l) => l[0] === '+').length;
  const removed = lines.filter((l) => l[0] === '-').length;
  return h('figure', { class: 'diff' },
    h('figcaption', null, h('span', { class: 'diff-path' }, c.path),
      h('span', { class: 'diff-add' }, ` +${added}`), h('span', { class: 'diff-del' }, ` −${removed}`),
      c.oldText === null || c.oldText === undefined ? h('span', { class: 'muted' }, ' (new file)') : null),
    h('pre', { class: 'diff-body' }, lines.slice(0, 2000).map(([op, t]) =>
      h('span', { class: op === '+' ? 'dl-add' : op === '-' ? 'dl-del' : 'dl-ctx' }, `${op === ' ' ? ' ' : op} ${t}\n`))));
}

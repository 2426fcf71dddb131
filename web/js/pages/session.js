// Session detail: live transcript (virtualised, lazily paged), permission banner, question
// banner, message box, interrupt / pause / resume / kill, usage.
//
// Opening costs two requests whatever the transcript length: the session, and the newest page
// of entries (`transcript/cursor`). Entry ids are dense from 1, so the newest id is the row
// count; older pages load when they scroll into view. The per-session stream resumes from the
// session's `lastEventId`, so nothing between the two reads is lost, and entry revisions merge
// (newest wins), so nothing is shown twice.

import { h, put, statusBadge, statusLabel, fmtAgo, fmtTime, fmtNum, fmtCost, shortId, LIVE, ENDED, perFrame } from '../dom.js';
import { get, post, del, qs, ApiError } from '../api.js';
import { EventStream } from '../stream.js';
import { VirtualList } from '../vlist.js';
import { renderEntry } from '../transcript.js';
import { confirmDialog } from '../dialogs.js';

const PAGE = 200;
const TEXT_KINDS = new Set(['agent_message', 'agent_thought']);
const ESTIMATE = { user_message: 70, agent_message: 80, agent_thought: 44, tool_call: 96, plan: 110, permission: 40, usage: 30, system: 30, question: 70 };

export async function mount(main, ctx, [id]) {
  const t0 = performance.now();
  ctx.title('Session');
  put(main, h('section', { class: 'page' }, h('h1', null, 'Session'), h('p', { class: 'muted' }, 'Loading…')));
  let info;
  try {
    info = await get(`/v1/sessions/${encodeURIComponent(id)}`);
  } catch (e) {
    put(main, h('section', { class: 'page' }, h('h1', null, 'Session not found'),
      h('p', null, e instanceof ApiError && (e.status === 404 || e.status === 400)
        ? `No session ${id} is visible to you.` : `Cannot load the session: ${e.message}`),
      h('a', { href: '/dashboard/sessions' }, 'Back to Sessions')));
    return {};
  }
  ctx.title(info.name);

  // ------------------------------------------------------------------------ transcript model
  const entries = new Map(); // entryId -> entry (latest revision)
  const live = new Map(); // entryId -> streamed text (message_delta) of an open text entry
  const pages = new Map(); // page index -> 'loading' | 'done'
  const ui = { open: new Set(), liveText, changed: () => list?.schedule() };
  let count = 0;
  let list = null;
  const dirty = new Set();
  const flush = perFrame(() => {
    if (!list) return;
    list.setCount(count);
    for (const eid of dirty) list.invalidate(eid - 1);
    dirty.clear();
  });

  function liveText(e) {
    const l = live.get(e.entryId);
    if (l === undefined || e.revision >= 2) return null;
    if (!e.text) return l;
    // Deltas sent before this page subscribed are not replayable (only the entry's first
    // revision and its final text are durable): mark the hole until the final text arrives.
    return l.startsWith(e.text) ? l : `${e.text} … ${l}`;
  }

  function putEntry(e) {
    const cur = entries.get(e.entryId);
    if (cur && cur.revision > e.revision) return;
    entries.set(e.entryId, e);
    if (TEXT_KINDS.has(e.kind) && e.revision >= 2) live.delete(e.entryId);
    if (e.entryId > count) count = e.entryId;
    dirty.add(e.entryId);
    flush();
  }

  function onDelta(d) {
    if (!d || !d.entryId) return;
    if (!entries.has(d.entryId)) {
      entries.set(d.entryId, { entryId: d.entryId, kind: d.kind, revision: 0, text: '', timestamp: new Date().toISOString(), provisional: true });
      if (d.entryId > count) count = d.entryId;
    }
    const e = entries.get(d.entryId);
    if (e.revision >= 2) return;
    live.set(d.entryId, (live.get(d.entryId) ?? '') + (d.text ?? ''));
    dirty.add(d.entryId);
    flush();
  }

  async function loadPage(p) {
    if (pages.has(p)) return;
    pages.set(p, 'loading');
    try {
      const r = await get(`/v1/sessions/${id}/transcript/cursor${qs({ after_id: p * PAGE, limit: PAGE })}`);
      for (const m of r.messages || []) putEntry(m);
      pages.set(p, 'done');
    } catch (e) {
      pages.delete(p);
      if (!(e instanceof ApiError && e.status === 0)) ctx.errorToast(e, 'Loading transcript');
    }
  }

  function onRange(first, last) {
    // Rows are 0-based, entry ids 1-based; load the pages of missing entries in view.
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
      if (pages.has(p)) continue;
      const lo = p * PAGE + 1;
      const hi = Math.min(count, (p + 1) * PAGE);
      for (let eid = Math.max(lo, first + 1); eid <= Math.min(hi, last + 1); eid++) {
        const e = entries.get(eid);
        if (!e || e.provisional) {
          loadPage(p);
          break;
        }
      }
    }
  }

  // ------------------------------------------------------------------------ layout
  const titleEl = h('h1', { class: 'session-title' }, info.name);
  const badgeBox = h('span', { class: 'status-box', id: 'session-status', 'aria-live': 'polite' });
  const metaBox = h('div', { class: 'session-meta' });
  const actionsBox = h('div', { class: 'session-actions', role: 'group', 'aria-label': 'Session actions' });
  const usageBox = h('div', { class: 'usage-box' });
  const detailsBox = h('details', { class: 'session-details' }, h('summary', null, 'Details'));
  const banner = h('div', { class: 'banner-slot', 'aria-live': 'assertive' });
  const staleNote = h('div', { class: 'stale-note', role: 'status', hidden: true },
    'Connection lost — reconnecting. What you see may be out of date; updates resume exactly where they stopped.');
  const scroller = h('div', {
    class: 'transcript', id: 'transcript', tabindex: '0', role: 'log', 'aria-label': 'Transcript', 'aria-live': 'off',
  });
  const jump = h('button', { class: 'btn jump', hidden: true, onclick: () => { list.scrollToEnd(); jump.hidden = true; } }, 'Jump to latest ↓');
  const composerText = h('textarea', {
    id: 'composer', name: 'text', rows: 2, placeholder: 'Send a message to the agent (Ctrl+Enter to send)',
    onkeydown: (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        composer.requestSubmit();
      }
    },
  });
  const sendBtn = h('button', { type: 'submit', class: 'btn primary', id: 'send' }, 'Send');
  const composerNote = h('div', { class: 'muted small', role: 'status', id: 'composer-note' });
  const composer = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); send(); } },
    h('label', { for: 'composer', class: 'sr-only' }, 'Message'),
    composerText, sendBtn);

  put(main, h('section', { class: 'page page-session', dataset: { sessionId: id } },
    h('div', { class: 'session-head' },
      h('div', { class: 'crumbs' }, h('a', { href: '/dashboard/sessions' }, '‹ Sessions')),
      h('div', { class: 'title-row' }, titleEl, badgeBox, h('div', { class: 'spacer' }), actionsBox),
      metaBox,
      h('div', { class: 'head-row' }, usageBox, detailsBox)),
    staleNote,
    banner,
    h('div', { class: 'transcript-wrap' }, scroller, jump),
    h('div', { class: 'composer-wrap' }, composer, composerNote)));

  // ------------------------------------------------------------------------ info rendering
  function renderInfo() {
    ctx.title(info.name);
    put(titleEl, info.name);
    put(badgeBox, statusBadge(info.status), info.paused ? h('span', { class: 'tag' }, 'paused') : null,
      info.statusText && info.statusText.toLowerCase() !== statusLabel(info.status).toLowerCase()
        ? h('span', { class: 'muted status-text' }, ` ${info.statusText}`) : null);
    put(metaBox,
      h('span', { class: 'mono', title: info.id }, shortId(info.id)), ' · ',
      h('span', { class: 'mono ellipsis', title: info.workDir }, info.workDir), ' · ',
      `agent ${info.agent}`, info.model ? ` · model ${info.model}` : '', ` · mode ${info.permissionMode}${info.modeEmulated ? ' (emulated)' : ''}`,
      info.queue?.length ? ` · ${info.queue.length} queued` : '');
    const ended = ENDED.has(info.status);
    const running = ['working', 'stalled', 'permission_prompt', 'asking'].includes(info.status);
    const canResume = info.paused || ['interrupted', 'rate_limited'].includes(info.status);
    put(actionsBox,
      h('button', { class: 'btn', id: 'act-interrupt', disabled: !running, onclick: () => action('interrupt', 'Interrupted the turn') }, 'Interrupt'),
      info.paused || canResume
        ? h('button', { class: 'btn', id: 'act-resume', disabled: ended, onclick: () => action('resume', 'Resumed') }, 'Resume')
        : h('button', { class: 'btn', id: 'act-pause', disabled: ended, onclick: () => action('pause', 'Paused: queued prompts wait') }, 'Pause'),
      h('button', { class: 'btn danger', id: 'act-kill', disabled: ended, onclick: () => kill() }, 'Kill'));
    const u = info.usage || {};
    const ctxPct = u.contextSize ? Math.min(100, Math.round((100 * (u.contextUsed || 0)) / u.contextSize)) : null;
    put(usageBox,
      h('span', { title: 'Tokens' }, `${fmtNum(u.inputTokens || 0)} in · ${fmtNum(u.outputTokens || 0)} out`),
      u.cacheReadTokens ? h('span', null, ` · ${fmtNum(u.cacheReadTokens)} cached`) : null,
      h('span', { class: 'cost', title: `Cost (${u.costSource || 'agent'})` }, ` · ${fmtCost(u.costUsd || 0)}${u.costSource === 'estimated' ? ' est.' : ''}`),
      ctxPct !== null ? h('span', { class: 'ctx' }, ' · context ',
        h('meter', { min: 0, max: 100, value: ctxPct, 'aria-label': 'Context window used' }), ` ${ctxPct}%`) : null);
    const dl = h('dl', { class: 'kv small' },
      kv('Id', h('span', { class: 'mono' }, info.id)),
      kv('Work dir', h('span', { class: 'mono' }, info.workDir)),
      kv('Created', fmtTime(info.createdAt)),
      kv('Last activity', fmtAgo(info.lastActivity)),
      kv('Owner', `${info.ownerKeyId} (${info.tenantId})`),
      info.title ? kv('Title', info.title) : null,
      info.statusReason ? kv('Status reason', info.statusReason) : null,
      info.agentInfo ? kv('Agent', `${info.agentInfo.name} ${info.agentInfo.version || ''}`) : null,
      info.pid ? kv('PID', info.pid) : null,
      info.lastError ? kv('Last error', `${info.lastError.code}: ${info.lastError.message}`) : null,
      info.exit ? kv('Exit', `code ${info.exit.code ?? '—'} signal ${info.exit.signal ?? '—'} ${info.exit.reason || ''}`) : null);
    const tail = info.exit?.stderrTail?.length ? h('pre', { class: 'stderr' }, info.exit.stderrTail.join('\n')) : null;
    const open = detailsBox.open;
    put(detailsBox, h('summary', null, 'Details'), dl, tail);
    detailsBox.open = open;
    renderBanner();
    composerText.disabled = ended;
    sendBtn.disabled = ended;
    put(composerNote, ended ? `This session has ended (${info.status}); it is read-only.` : '');
  }

  function renderBanner() {
    const p = info.pendingPermission;
    const q = info.pendingQuestion;
    if (p && p.status === 'pending') {
      const tc = p.toolCall || {};
      const raw = tc.rawInput;
      const cmd = raw && typeof raw === 'object' ? raw.command || raw.file_path || raw.path || null : null;
      const always = (p.options || []).some((o) => o.kind === 'allow_always');
      put(banner, h('div', { class: 'banner banner-permission', role: 'region', 'aria-label': 'Permission request', id: 'permission-banner', dataset: { requestId: p.requestId } },
        h('div', { class: 'banner-text' },
          h('strong', null, 'Permission needed: '), h('span', { class: 'perm-title' }, tc.title || p.prompt || 'tool call'),
          cmd ? h('code', { class: 'perm-cmd' }, String(cmd)) : null,
          (info.pendingPermissions?.length || 0) > 1 ? h('span', { class: 'muted' }, ` (+${info.pendingPermissions.length - 1} more)`) : null,
          h('div', { class: 'muted small' }, 'Press ', h('kbd', null, 'A'), ' to approve or ', h('kbd', null, 'R'), ' to reject.')),
        h('div', { class: 'banner-actions' },
          h('button', { class: 'btn primary', id: 'perm-approve', onclick: () => answer('approve', p) }, 'Approve'),
          always ? h('button', { class: 'btn', id: 'perm-always', onclick: () => answer('always', p) }, 'Always') : null,
          h('button', { class: 'btn danger', id: 'perm-reject', onclick: () => answer('reject', p) }, 'Reject'))));
    } else if (q) {
      const input = h('input', { id: 'answer-text', autocomplete: 'off' });
      put(banner, h('form', {
        class: 'banner banner-question', 'aria-label': 'Question from the agent', id: 'question-banner',
        onsubmit: (e) => { e.preventDefault(); answerQuestion(q, input.value); },
      },
      h('div', { class: 'banner-text' }, h('strong', null, 'The agent asks: '), q.message),
      q.options?.length
        ? h('div', { class: 'banner-actions' }, q.options.map((o) => h('button', { type: 'button', class: 'btn', onclick: () => answerQuestion(q, o) }, o)))
        : h('div', { class: 'banner-actions' }, h('label', { for: 'answer-text', class: 'sr-only' }, 'Answer'), input,
          h('button', { type: 'submit', class: 'btn primary' }, 'Answer')),
      h('button', { type: 'button', class: 'btn', onclick: () => answerQuestion(q, null, 'decline') }, 'Decline')));
    } else {
      put(banner);
    }
  }

  // ------------------------------------------------------------------------ actions
  async function answer(kind, p, confirmFirst = false) {
    const title = p.toolCall?.title || p.prompt || 'this tool call';
    if (confirmFirst) {
      const ok = await confirmDialog({
        title: kind === 'reject' ? `Reject “${title}”?` : `Approve “${title}”?`,
        body: kind === 'reject' ? 'The agent is told the tool call was refused.' : 'The agent runs the tool call once.',
        confirmLabel: kind === 'reject' ? 'Reject' : 'Approve',
        danger: kind === 'reject',
      });
      if (!ok) return;
    }
    try {
      if (kind === 'reject') await post(`/v1/sessions/${id}/reject`, { requestId: p.requestId });
      else await post(`/v1/sessions/${id}/approve`, kind === 'always' ? { requestId: p.requestId, always: true } : { requestId: p.requestId });
      ctx.toast(kind === 'reject' ? `Rejected: ${title}` : `Approved: ${title}`);
      info.pendingPermission = null;
      renderBanner();
      refresh();
    } catch (e) {
      ctx.errorToast(e, kind === 'reject' ? 'Reject' : 'Approve');
      refresh();
    }
  }

  async function answerQuestion(q, value, action) {
    try {
      const body = { questionId: q.questionId };
      if (action) body.action = action;
      else body.answer = value;
      await post(`/v1/sessions/${id}/answer`, body);
      refresh();
    } catch (e) {
      ctx.errorToast(e, 'Answer');
    }
  }

  async function action(name, done) {
    try {
      await post(`/v1/sessions/${id}/${name}`, {});
      ctx.toast(done);
      refresh();
    } catch (e) {
      ctx.errorToast(e, name);
    }
  }

  async function kill() {
    const ok = await confirmDialog({ title: `Kill ${info.name}?`, body: 'The agent is stopped; the transcript is kept.', confirmLabel: 'Kill', danger: true });
    if (!ok) return;
    try {
      await del(`/v1/sessions/${id}`);
      ctx.toast(`Killed ${info.name}`);
      refresh();
    } catch (e) {
      ctx.errorToast(e, 'Kill');
    }
  }

  async function send() {
    const text = composerText.value.trim();
    if (!text) return;
    sendBtn.disabled = true;
    try {
      const r = await post(`/v1/sessions/${id}/send`, { text });
      composerText.value = '';
      put(composerNote, r.delivered ? 'Sent.' : `Queued (position ${r.position ?? '?'}).`);
      list?.scrollToEnd();
    } catch (e) {
      ctx.errorToast(e, 'Send');
    } finally {
      sendBtn.disabled = ENDED.has(info.status);
    }
  }

  // Re-read the session after events (debounced), and once more a little later: the
  // snapshot behind GET may lag the event that announced the change by a moment.
  let refreshTimer = 0;
  let settleTimer = 0;
  async function fetchInfo() {
    try {
      info = await get(`/v1/sessions/${id}`);
      renderInfo();
    } catch {
      /* the stream indicator shows connectivity */
    }
  }
  function refresh() {
    clearTimeout(refreshTimer);
    clearTimeout(settleTimer);
    refreshTimer = setTimeout(fetchInfo, 80);
    settleTimer = setTimeout(fetchInfo, 700);
  }

  // ------------------------------------------------------------------------ stream
  const statusLog = [info.status]; // every status this page showed, in order
  const stream = new EventStream({
    path: `/v1/sessions/${id}/events`,
    sessionId: id,
    after: info.lastEventId ?? 0,
    dense: true,
    onEvent: (env) => {
      const d = env.data || {};
      switch (env.event) {
        case 'message':
          putEntry(d);
          break;
        case 'message_delta':
          onDelta(d);
          break;
        case 'status':
          statusLog.push(d.status);
          if (info.status !== d.status) info.statusText = '';
          info.status = d.status;
          if (d.status !== 'permission_prompt') info.pendingPermission = null;
          renderInfo();
          refresh();
          break;
        case 'connected':
        case 'heartbeat':
          break;
        default:
          refresh();
      }
    },
    onState: (s) => {
      ctx.setConn('session', s === 'ended' ? null : s);
      staleNote.hidden = !(s === 'reconnecting' || s === 'offline');
    },
  }).start();

  renderInfo();

  // ------------------------------------------------------------------------ first page
  // Read strictly after the session (whose lastEventId the stream resumes from): an entry
  // written in between is then in this page or in the replay — never in neither.
  try {
    const r = await get(`/v1/sessions/${id}/transcript/cursor${qs({ limit: PAGE })}`);
    for (const m of r.messages || []) putEntry(m);
    if (r.newest_id && r.newest_id > count) count = r.newest_id;
  } catch (e) {
    ctx.errorToast(e, 'Loading transcript');
  }
  list = new VirtualList(scroller, {
    count,
    estimate: (i) => ESTIMATE[entries.get(i + 1)?.kind] ?? 60,
    render: (i) => renderEntry(entries.get(i + 1) ?? { entryId: i + 1, placeholder: true }, ui),
    onRange,
    onFollow: (following) => {
      jump.hidden = following;
    },
  });
  list.render();
  scroller.dataset.ready = 'true';
  scroller.dataset.count = String(count);
  const ready = performance.now();
  window.__aegis.metrics.transcriptReady = { sessionId: id, sinceNavigationMs: ready, sinceMountMs: ready - t0, count };
  window.__aegis.transcript = () => [...entries.values()].filter((e) => !e.provisional)
    .map((e) => ({ entryId: e.entryId, revision: e.revision, kind: e.kind, text: e.text }))
    .sort((a, b) => a.entryId - b.entryId);
  window.__aegis.scrollTranscriptTo = (entryId) => list.scrollToIndex(entryId - 1);
  window.__aegis.followTranscript = () => {
    list.scrollToEnd();
    jump.hidden = true;
  };
  window.__aegis.statusLog = () => statusLog.slice();

  return {
    stream: () => stream,
    unmount() {
      stream.stop();
      clearTimeout(refreshTimer);
      clearTimeout(settleTimer);
      list?.destroy();
      delete window.__aegis.transcript;
      delete window.__aegis.scrollTranscriptTo;
      delete window.__aegis.followTranscript;
      delete window.__aegis.statusLog;
    },
    onKey(e, key) {
      const p = info.pendingPermission;
      if (!p || p.status !== 'pending') return false;
      if (key === 'a') {
        answer('approve', p, true);
        return true;
      }
      if (key === 'r') {
        answer('reject', p, true);
        return true;
      }
      return false;
    },
  };
}

function kv(k, v) {
  return [h('dt', null, k), h('dd', null, v)];
}

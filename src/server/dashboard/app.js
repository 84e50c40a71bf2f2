// The Crucible dashboard: runs, a run's timeline and stages (live over server-sent events),
// answering a waiting promise, cancel / resume / fork, experiment comparisons and training curves.
// Plain ES module; Chart.js comes from the server (Debian's libjs-chart.js), never a CDN.

const view = document.getElementById('view');
const notice = document.getElementById('notice');
const keyInput = document.getElementById('api-key');
let current = null;  // the page being shown: { stop() }

// ---- API -----------------------------------------------------------------------------------

function apiKey() { return sessionStorage.getItem('crucible.key') || ''; }

function headers(extra = {}) {
  const h = { ...extra };
  if (apiKey()) h.Authorization = 'Bearer ' + apiKey();
  return h;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.headers) });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const message = body && body.message ? body.message : `HTTP ${res.status}`;
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return body;
}

function post(path, body) {
  return api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                     body: body === undefined ? '{}' : JSON.stringify(body) });
}

function say(message) { notice.textContent = message || ''; }

function explain(err) {
  if (err.status === 401) return 'This server needs an API key: paste one above (crucible keys create).';
  if (err.status === 403) return 'This API key may only read: ' + err.message;
  return err.message;
}

// Server-sent events over fetch, so the API key travels in a header and never in a URL. Calls
// onEvent(type, data, id) per event and reconnects from the last id until stopped or `end`.
function streamEvents(runId, onEvent, fromId = '') {
  const control = new AbortController();
  let lastId = fromId;
  let stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const h = headers(lastId ? { 'Last-Event-ID': lastId } : {});
        const res = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, { headers: h, signal: control.signal });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let type = 'message', data = '', id = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) type = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
              else if (line.startsWith('id: ')) id = line.slice(4);
            }
            if (id) lastId = id;
            if (!data) continue;
            let parsed = null;
            try { parsed = JSON.parse(data); } catch (e) { parsed = data; }
            onEvent(type, parsed, id);
            if (type === 'end') { stopped = true; return; }
          }
        }
      } catch (e) {
        if (stopped || control.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => { stopped = true; control.abort(); };
}

// ---- helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function statusBadge(status) { return el('span', { class: 'status ' + status }, status.replaceAll('_', ' ')); }

function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)}m ${Math.round((ms % 60000) / 1000)}s`;
}

function value(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function table(columns, rows, attrs = {}) {
  return el('div', { class: 'scroll' },
    el('table', attrs,
      el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col' }, c)))),
      el('tbody', {}, rows)));
}

function keyValues(obj, id) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el('p', { class: 'meta' }, 'none');
  return table(['name', 'value'],
    entries.map(([k, v]) => el('tr', {}, el('td', { class: 'mono' }, k), el('td', { class: 'mono' }, value(v)))),
    { id });
}

const finished = new Set(['completed', 'failed', 'cancelled', 'deadline_exceeded']);

// ---- runs list -----------------------------------------------------------------------------

function runsPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const status = el('select', { id: 'filter-status', name: 'status' },
    ['', 'running', 'queued', 'waiting', 'needs_attention', 'completed', 'failed', 'cancelled', 'deadline_exceeded']
      .map((s) => el('option', { value: s, selected: params.get('status') === s }, s || 'any')));
  const pipeline = el('input', { id: 'filter-pipeline', name: 'pipeline', value: params.get('pipeline') || '',
                                 placeholder: 'any' });
  const body = el('tbody');
  const live = el('span', { class: 'live', 'aria-live': 'off' });
  view.replaceChildren(
    el('h1', {}, 'Runs'),
    el('form', { class: 'filters', onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      if (status.value) q.set('status', status.value);
      if (pipeline.value) q.set('pipeline', pipeline.value);
      location.hash = '#/' + (q.toString() ? '?' + q : '');
    } },
      el('label', {}, 'Status', status), el('label', {}, 'Pipeline', pipeline),
      el('button', { type: 'submit' }, 'Filter'), live),
    el('div', { class: 'scroll' }, el('table', { id: 'runs' },
      el('thead', {}, el('tr', {}, ['Run', 'Pipeline', 'Status', 'Started', 'Duration']
        .map((c) => el('th', { scope: 'col' }, c)))), body)));
  let timer = null;
  let stopped = false;
  async function refresh() {
    const q = new URLSearchParams({ limit: '100' });
    if (status.value) q.set('status', status.value);
    if (pipeline.value) q.set('pipeline', pipeline.value);
    try {
      const data = await api('/v1/runs?' + q);
      say('');
      body.replaceChildren(...data.runs.map((r) => el('tr', { 'data-run-id': r.run_id },
        el('td', {}, el('a', { href: '#/runs/' + encodeURIComponent(r.run_id), class: 'mono' }, r.run_id)),
        el('td', {}, r.pipeline),
        el('td', {}, statusBadge(r.status)),
        el('td', { title: new Date(r.created_ms).toISOString() }, ago(r.created_ms)),
        el('td', { class: 'num' }, duration(r.updated_ms - r.created_ms)))));
      if (!data.runs.length) body.replaceChildren(el('tr', {}, el('td', { colspan: 5 }, 'No runs yet.')));
      live.textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      say(explain(e));
    }
    if (!stopped) timer = setTimeout(refresh, 2000);
  }
  refresh();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// ---- one run -------------------------------------------------------------------------------

function timeline(detail) {
  const attempts = detail.timeline || [];
  if (!attempts.length) return el('p', { class: 'meta' }, 'No stage has started yet.');
  const now = Date.now();
  const start = Math.min(...attempts.map((a) => a.start_ms));
  const end = Math.max(...attempts.map((a) => a.end_ms ?? now), start + 1);
  const span = end - start;
  const place = (bar, from, to) => {
    // Set through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    bar.style.left = `${((from - start) / span) * 100}%`;
    bar.style.width = `${Math.max(0.4, ((to - from) / span) * 100)}%`;
    return bar;
  };
  // A hedged step's requests under it: the primary from the step's start, each backup from its
  // planned delay; the winner to its answer, the others until they were cancelled.
  const hedgeLanes = (a, h) => {
    const stop = a.end_ms ?? now;
    const lanes = [];
    for (let k = 0; k < h.attempts; k++) {
      const from = k === 0 ? a.start_ms : a.start_ms + (h.hedge_delay ?? 0) * k;
      let to = stop;
      if (k === h.winner) to = k === 0 ? a.start_ms + (h.primary_latency ?? stop - a.start_ms) : from + (h.backup_latency ?? stop - from);
      const won = k === h.winner;
      const name = k === 0 ? 'primary' : `backup #${k}`;
      const title = `${a.key} ${name}: ${won ? 'won' : 'cancelled'} after ${duration(to - from)}`;
      lanes.push(el('div', { class: 'lane sub', role: 'listitem' },
        el('span', { class: 'label', title }, `↳ ${name}`),
        el('div', { class: 'track' },
          place(el('div', { class: `bar hedge-attempt ${won ? 'won' : 'cancelled'}`, title, 'aria-label': title }),
                Math.min(from, stop), Math.min(Math.max(to, from), stop)))));
    }
    return lanes;
  };
  return el('div', { class: 'timeline', id: 'timeline', role: 'list', 'aria-label': 'stage timeline' },
    attempts.flatMap((a) => {
      const stop = a.end_ms ?? now;
      const h = a.hedging;
      const hedged = h && h.hedged;
      let title = `${a.key} attempt ${a.attempt}: ${a.status}, ${duration(stop - a.start_ms)}`;
      if (hedged) title += `; hedged: ${h.attempts} requests, winner ${h.winner === 0 ? 'the primary' : 'backup #' + h.winner}`;
      if (a.error) title += `; ${a.error}`;
      const bar = place(el('div', { class: `bar ${a.status}${hedged ? ' hedged' : ''}`, title, 'aria-label': title }),
                        a.start_ms, stop);
      const lane = el('div', { class: 'lane', role: 'listitem' },
        el('span', { class: 'label', title: a.key }, a.attempt > 1 ? `${a.key} #${a.attempt}` : a.key),
        el('div', { class: 'track' }, bar));
      return hedged ? [lane, ...hedgeLanes(a, h)] : [lane];
    }));
}

function stagesTable(detail) {
  const hedging = {};
  for (const a of detail.timeline || []) if (a.hedging && a.hedging.hedged) hedging[a.key] = a.hedging;
  return table(['Step', 'Status', 'Attempts', 'Duration', 'Hedging', 'Error'],
    (detail.stages || []).map((s) => {
      const h = hedging[s.key];
      return el('tr', { 'data-step': s.key },
        el('td', { class: 'mono' }, s.key), el('td', {}, statusBadge(s.status)),
        el('td', { class: 'num' }, s.attempts), el('td', { class: 'num' }, duration(s.duration_ms)),
        el('td', {}, h ? `${h.attempts} requests; winner ${h.winner === 0 ? 'primary' : 'backup #' + h.winner}` : ''),
        el('td', {}, s.error || ''));
    }), { id: 'stages' });
}

function signalForm(runId, promise, onDone) {
  const text = el('textarea', { id: 'signal-value', name: 'value', 'aria-describedby': 'signal-help' }, 'true');
  const button = el('button', { type: 'submit', class: 'primary', id: 'signal-send' }, 'Send');
  return el('form', { class: 'panel attention', id: 'signal', onsubmit: async (e) => {
    e.preventDefault();
    let parsed;
    try { parsed = JSON.parse(text.value); } catch (err) { say('The value must be JSON: ' + err.message); text.focus(); return; }
    button.disabled = true;
    try {
      await post(`/v1/runs/${encodeURIComponent(runId)}/signals/${encodeURIComponent(promise)}`, parsed);
      say('');
      onDone();
    } catch (err) { say(explain(err)); button.disabled = false; }
  } },
    el('h2', {}, `Waiting for “${promise}”`),
    el('p', { id: 'signal-help', class: 'meta' }, 'The run continues with this value (JSON) as the promise’s answer.'),
    el('label', { for: 'signal-value' }, 'Value'), text, el('p', {}, button));
}

function curves(points) {
  const names = new Set();
  for (const p of points) for (const [k, v] of Object.entries(p)) if (k !== 'step' && typeof v === 'number') names.add(k);
  const canvas = el('canvas', { id: 'curves', role: 'img', 'aria-label': 'training metrics over steps' });
  const box = el('div', { class: 'chart-box' }, canvas);
  const palette = ['#1f5fbf', '#b3261e', '#207a3c', '#9a6700', '#6f42c1', '#0a7b83'];
  new Chart(canvas, {
    type: 'line',
    data: { datasets: [...names].map((name, i) => ({
      label: name, borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length],
      pointRadius: 0, borderWidth: 2, spanGaps: true,
      data: points.filter((p) => typeof p[name] === 'number').map((p) => ({ x: p.step, y: p[name] })) })) },
    options: { animation: false, maintainAspectRatio: false, parsing: false,
               scales: { x: { type: 'linear', title: { display: true, text: 'step' } } } },
  });
  return box;
}

function runPage(runId) {
  const root = el('div');
  view.replaceChildren(root);
  let stopStream = null;
  let stopped = false;
  let pending = null;
  let chartShown = false;
  let lastStatus = '';
  let lastSeq = '';

  async function act(path, body, message) {
    try { await post(path, body); say(''); if (message) say(message); await render(); } catch (e) { say(explain(e)); }
  }

  async function render() {
    let detail;
    try { detail = await api('/v1/runs/' + encodeURIComponent(runId)); } catch (e) { say(explain(e)); return; }
    if (stopped) return;
    const status = detail.interrupted ? 'interrupted' : detail.status;
    const forkFrom = el('select', { id: 'fork-from', name: 'from' },
      (detail.stages || []).map((s) => el('option', { value: s.key }, s.key)));
    const base = `/v1/runs/${encodeURIComponent(runId)}`;
    const waitingOn = detail.promises && detail.promises.waiting;
    const focused = document.activeElement && document.activeElement.id;
    const keepSignal = root.querySelector('#signal-value');
    const signalText = keepSignal ? keepSignal.value : null;
    root.replaceChildren(...[
      el('h1', {}, 'Run ', el('span', { class: 'mono' }, detail.run_id)),
      el('p', { class: 'meta' }, el('span', { id: 'run-status' }, statusBadge(status)), ' ',
        `pipeline ${detail.pipeline} · started ${ago(detail.created_ms)} · ${detail.records} records`,
        detail.parent_run ? el('span', {}, ' · forked from ', el('a', { href: '#/runs/' + encodeURIComponent(detail.parent_run) }, detail.parent_run)) : null,
        detail.experiments ? el('span', {}, ' · ', el('a', { href: `#/runs/${encodeURIComponent(runId)}/experiments`, id: 'experiments-link' }, 'experiments')) : null),
      detail.error ? el('p', { class: 'panel', id: 'run-error' }, detail.error) : null,
      detail.interrupted ? el('p', { class: 'panel attention' }, 'Interrupted: ', detail.interrupted.reason) : null,
      el('div', { class: 'actions' },
        el('button', { id: 'cancel', class: 'danger', disabled: finished.has(detail.status),
                       onclick: () => act(base + '/cancel', { reason: 'cancelled from the dashboard' }) }, 'Cancel'),
        el('button', { id: 'resume', disabled: finished.has(detail.status) || (detail.status === 'running' && !detail.interrupted),
                       onclick: () => act(base + '/resume', {}) }, 'Resume'),
        el('label', {}, 'Fork from step', forkFrom),
        el('button', { id: 'fork', disabled: !(detail.stages || []).length, onclick: async () => {
          try {
            const r = await post(base + '/fork', { from: forkFrom.value });
            location.hash = '#/runs/' + encodeURIComponent(r.run_id);
          } catch (e) { say(explain(e)); }
        } }, 'Fork'),
        el('span', { class: 'live', id: 'live' }, stopStream ? 'live' : '')),
      waitingOn ? signalForm(runId, waitingOn, render) : null,
      el('h2', {}, 'Timeline'), timeline(detail),
      el('h2', {}, 'Stages'), stagesTable(detail),
      el('div', { class: 'grid2' },
        el('section', {}, el('h2', {}, 'Metrics'), keyValues(detail.metrics, 'metrics')),
        el('section', {}, el('h2', {}, 'Artifacts'), keyValues(detail.artifacts, 'artifacts'))),
      el('div', { id: 'curves-slot' })].filter(Boolean));
    if (signalText !== null && root.querySelector('#signal-value')) root.querySelector('#signal-value').value = signalText;
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    if (!chartShown || !finished.has(detail.status)) {
      try {
        const log = await api(base + '/metrics-log');
        if (log.points && log.points.length && !stopped) {
          root.querySelector('#curves-slot').replaceChildren(el('h2', {}, 'Training curves'), curves(log.points));
          chartShown = true;
        }
      } catch (e) { /* no curves for this run */ }
    }
    lastStatus = detail.status;
    lastSeq = String(detail.last_seq ?? '');
    if (finished.has(lastStatus) && stopStream) { stopStream(); stopStream = null; }
  }

  function schedule() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; render(); }, 150);
  }

  render().then(() => {
    if (!stopped && !finished.has(lastStatus)) {
      // Only what happens after the page was drawn: the stream starts at its last record.
      stopStream = streamEvents(runId, () => schedule(), lastSeq);
      const live = root.querySelector('#live');
      if (live) live.textContent = 'live';
    }
  });
  return { stop() { stopped = true; if (stopStream) stopStream(); clearTimeout(pending); } };
}

// ---- experiments ---------------------------------------------------------------------------

function comparisonChart(c, index) {
  const groups = c.report.groups || [];
  const canvas = el('canvas', { class: 'exp-chart', id: `comparison-${index}`, role: 'img',
                                'aria-label': `mean ${c.report.metric} by group with confidence intervals` });
  new Chart(canvas, {
    type: 'bar',
    data: {
      labels: groups.map((g) => g.name),
      datasets: [
        { label: `mean ${c.report.metric}`, data: groups.map((g) => g.mean), backgroundColor: 'rgba(31,95,191,.55)' },
        { label: `${Math.round((1 - (c.report.alpha ?? 0.05)) * 100)}% interval`,
          data: groups.map((g) => [g.ci_low, g.ci_high]), backgroundColor: 'rgba(179,38,30,.55)',
          grouped: false, barPercentage: 0.2 },
      ],
    },
    options: { animation: false, maintainAspectRatio: false, scales: { x: { stacked: false } } },
  });
  return el('div', { class: 'chart-box' }, canvas);
}

function experimentsPage(runId) {
  let stopped = false;
  (async () => {
    let data;
    try { data = await api(`/v1/runs/${encodeURIComponent(runId)}/experiments`); } catch (e) { say(explain(e)); return; }
    if (stopped) return;
    const parts = [el('h1', {}, 'Experiments of ', el('a', { href: '#/runs/' + encodeURIComponent(runId), class: 'mono' }, runId))];
    data.comparisons.forEach((c, i) => {
      const groups = c.report.groups || [];
      parts.push(el('section', { class: 'panel' },
        el('h2', {}, `${c.key}: ${c.report.metric}`),
        c.report.verdict ? el('p', {}, typeof c.report.verdict === 'string' ? c.report.verdict : JSON.stringify(c.report.verdict)) : null,
        table(['Group', 'n', 'Mean', 'CI low', 'CI high'], groups.map((g) => el('tr', {},
          el('td', {}, g.name), el('td', { class: 'num' }, g.n), el('td', { class: 'num' }, value(g.mean)),
          el('td', { class: 'num' }, value(g.ci_low)), el('td', { class: 'num' }, value(g.ci_high))))),
        comparisonChart(c, i)));
    });
    for (const [key, branches] of Object.entries(data.experiments)) {
      parts.push(el('h2', {}, `Branches of ${key}`), table(['Config', 'Parameters', 'Status', 'Duration', 'Output'],
        branches.map((b) => el('tr', {},
          el('td', { class: 'mono' }, b.config_id), el('td', { class: 'mono' }, JSON.stringify(b.config)),
          el('td', {}, statusBadge(b.status || 'completed')), el('td', { class: 'num' }, duration((b.duration_ms ?? 0))),
          el('td', { class: 'mono' }, b.output ? JSON.stringify(b.output.metrics ?? b.output) : ''))), { class: 'branches' }));
    }
    if (parts.length === 1) parts.push(el('p', {}, 'This run has no experiments.'));
    view.replaceChildren(...parts.filter(Boolean));
  })();
  return { stop() { stopped = true; } };
}

// ---- routing -------------------------------------------------------------------------------

function route() {
  if (current) current.stop();
  say('');
  const hash = location.hash.split('?')[0];
  let m;
  if ((m = hash.match(/^#\/runs\/([^/]+)\/experiments$/))) current = experimentsPage(decodeURIComponent(m[1]));
  else if ((m = hash.match(/^#\/runs\/([^/]+)$/))) current = runPage(decodeURIComponent(m[1]));
  else current = runsPage();
  view.focus({ preventScroll: true });
}

keyInput.value = apiKey();
document.getElementById('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('crucible.key', keyInput.value.trim());
  route();
});
window.addEventListener('hashchange', route);
route();

// findashpro dashboard: the runs list (/) and one run (/runs/{db|dir}/{id}).
// Reads JSON tables ({columns, rows}) from /api and, for runs in PostgreSQL, asks again every
// two seconds so what a live run commits shows up without a reload.
'use strict';

const POLL_MS = 2000;
const main = document.getElementById('main');
const statusEl = document.getElementById('status');

// ---- formatting ---------------------------------------------------------------------------
const TIME_COLS = new Set(['time', 'since', 'created_at', 'committed', 'last_at', 'at', 'last_time', 'opened_at']);
const PRECISE_COLS = new Set(['confidence', 'predicted_return', 'kl', 'roc_auc', 'size_fraction']);
const QTY_COLS = new Set(['quantity', 'position']);
const INT_COLS = new Set(['order_id', 'count', 'orders', 'fills', 'trades', 'trainings', 'seq',
  'signals', 'refused', 'drift_events', 'quarantined', 'open_positions', 'failures',
  'requests_today', 'credits_today']);

function iso(seconds) {
  const t = new Date(seconds * 1000).toISOString();
  return t.endsWith('T00:00:00.000Z') ? t.slice(0, 10) : t.slice(0, 16).replace('T', ' ') + 'Z';
}
function num(v, digits) {
  return Number(v).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
function fmt(col, v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (TIME_COLS.has(col)) return iso(v);
  if (INT_COLS.has(col)) return String(v);
  if (col === 'max_drawdown' || col === 'drawdown' || col === 'return') return num(v * 100, 2) + ' %';
  if (PRECISE_COLS.has(col)) return num(v, 4);
  if (QTY_COLS.has(col)) return num(v, Number.isInteger(v) ? 0 : 4);
  return num(v, 2);
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

async function get(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.text()).trim()}`);
  return r.json();
}
function setStatus(text, bad) {
  statusEl.textContent = text;
  statusEl.className = bad ? 'status bad' : 'status';
}

// ---- tables -------------------------------------------------------------------------------
// Renders {columns, rows} into `host`; `key` names the column each row is tagged with
// (data-key), `link` turns a row into a link target.
function renderTable(host, table, opts = {}) {
  host.replaceChildren();
  if (!table.rows.length) {
    host.append(el('p', { className: 'muted empty', text: opts.empty || 'Nothing yet.' }));
    return;
  }
  const head = el('tr', {}, ...table.columns.map(c => el('th', { text: c.replace(/_/g, ' ') })));
  const body = el('tbody');
  for (const row of table.rows) {
    const tr = el('tr');
    if (opts.key) tr.setAttribute('data-key', String(row[table.columns.indexOf(opts.key)]));
    row.forEach((v, i) => {
      const col = table.columns[i];
      const td = el('td', { text: fmt(col, v) });
      if (typeof v === 'number') { td.className = 'n'; td.setAttribute('data-value', String(v)); }
      if (opts.link && col === opts.link.column) {
        td.replaceChildren(el('a', { href: opts.link.href(row), text: String(v) }));
      }
      if ((col === 'pnl' || col === 'unrealized_pnl' || col === 'realized') && typeof v === 'number') {
        td.classList.add(v < 0 ? 'neg' : 'pos');
      }
      if (col === 'breaker') td.classList.add(v === 'closed' ? 'pos' : 'neg');
      tr.append(td);
    });
    body.append(tr);
  }
  host.append(el('table', {}, el('thead', {}, head), body));
}

// ---- charts -------------------------------------------------------------------------------
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563'];
const utc = ts => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC');

// `right` (optional) is a second series family on its own scale and right-hand axis.
function chart(host, title, series, data, yFmt, right) {
  const width = Math.max(320, host.clientWidth || 800);
  const axes = [{}, { values: (u, vals) => vals.map(yFmt), size: 70 }];
  if (right) axes.push({ scale: right, side: 1, grid: { show: false }, values: (u, vals) => vals.map(yFmt), size: 70 });
  const opts = {
    title, width, height: 260, tzDate: utc,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true } },
    axes,
    series: [{ label: 'time', value: (u, v) => v == null ? '—' : iso(v) },
      ...series.map((s, i) => Object.assign({
        stroke: PALETTE[i % PALETTE.length], width: 1.5,
        value: (u, v) => v == null ? '—' : yFmt(v),
      }, s))],
  };
  host.replaceChildren();
  return new uPlot(opts, data, host);
}

// Keeps one uPlot per host, creating it on first data and updating it after.
const charts = {};
function draw(key, host, title, series, data, yFmt, right) {
  const c = charts[key];
  if (c && c.series.length === series.length + 1) {
    if (c.data[0].length !== data[0].length) c.setData(data);
    return;
  }
  if (c) c.destroy();
  charts[key] = chart(host, title, series, data, yFmt, right);
}
window.addEventListener('resize', () => {
  for (const c of Object.values(charts)) c.setSize({ width: c.root.parentElement.clientWidth, height: 260 });
});

const money = v => num(v, 0);
const pct = v => num(v * 100, 1) + ' %';

function drawEquity(table) {
  const host = document.getElementById('chart-equity');
  const ddHost = document.getElementById('chart-drawdown');
  if (!table.rows.length) { host.replaceChildren(el('p', { className: 'muted', text: 'No equity yet.' })); return; }
  const col = n => table.rows.map(r => r[table.columns.indexOf(n)]);
  draw('equity', host, 'Equity (left) and cash (right)',
    [{ label: 'equity', width: 2 }, { label: 'cash', dash: [4, 4], scale: 'cash', width: 1 }],
    [col('time'), col('equity'), col('cash')], money, 'cash');
  draw('drawdown', ddHost, 'Drawdown', [{ label: 'drawdown', fill: 'rgba(220,38,38,0.15)', stroke: '#dc2626' }],
    [col('time'), col('drawdown')], pct);
}

// One series per model, on the union of training times (AUC of the ensemble vs the baseline).
function drawModels(table) {
  const host = document.getElementById('chart-models');
  if (!table.rows.length) {
    host.replaceChildren(el('p', { className: 'muted empty', text: 'No model trainings (a rule model, or none yet).' }));
    return;
  }
  const [ti, mi, ai] = ['time', 'model', 'roc_auc'].map(c => table.columns.indexOf(c));
  const times = [...new Set(table.rows.map(r => r[ti]))].sort((a, b) => a - b);
  const order = m => (m === 'ensemble' ? 0 : m === 'baseline' ? 1 : 2);
  const models = [...new Set(table.rows.map(r => r[mi]))].sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  const at = new Map(times.map((t, i) => [t, i]));
  const data = [times, ...models.map(() => times.map(() => null))];
  for (const r of table.rows) data[1 + models.indexOf(r[mi])][at.get(r[ti])] = r[ai];
  draw('models', host, 'Out-of-sample ROC AUC by training',
    models.map(m => ({ label: m, spanGaps: true, points: { show: true }, width: m === 'ensemble' ? 2.5 : 1.2 })),
    data, v => num(v, 3));
}

// ---- pages --------------------------------------------------------------------------------
// The providers' breakers and today's use, shared by every process through Redis; the section
// stays hidden when fdp serve has no Redis (404).
async function refreshProviders(section, host, note) {
  const r = await fetch('/api/providers', { cache: 'no-store' });
  if (r.status === 404) { section.hidden = true; return; }
  if (!r.ok) throw new Error(`/api/providers: ${r.status} ${(await r.text()).trim()}`);
  const t = await r.json();
  section.hidden = false;
  renderTable(host, t, { key: 'provider', empty: 'No provider has been asked yet.' });
  note.textContent = `Spent today (UTC), across providers: ${num(t.spend_today, 2)}`;
}

async function runsPage() {
  document.title = 'Runs — findashpro';
  const host = el('div');
  const providers = el('div', { id: 'providers' });
  const spend = el('p', { className: 'muted', id: 'spend' });
  const section = el('section', { hidden: true }, el('h2', { text: 'Providers' }), providers, spend);
  main.replaceChildren(el('h1', { text: 'Runs' }), host, section);
  const refresh = async () => {
    try {
      const t = await get('/api/runs');
      renderTable(host, t, {
        key: 'run_id', empty: 'No runs: start fdp serve with --database-url or --runs.',
        link: { column: 'run_id', href: r => `/runs/${r[0]}/${encodeURIComponent(r[1])}` },
      });
      await refreshProviders(section, providers, spend);
      setStatus(`${t.rows.length} runs · ${new Date().toISOString().slice(11, 19)}Z`);
      document.body.setAttribute('data-ready', '1');
    } catch (e) {
      setStatus(e.message, true);
    }
  };
  await refresh();
  setInterval(refresh, 5000);
}

const SECTIONS = [
  ['positions', 'Open positions', 'ticker'],
  ['pnl', 'P&L by ticker', 'ticker'],
  ['orders', 'Orders (latest 200)', 'order_id'],
  ['outcomes', 'Order outcomes', null],
  ['fills', 'Fills (latest 200)', 'order_id'],
  ['signals', 'Signals (latest 100)', null],
  ['drift', 'Drift events (latest 200)', null],
  ['quarantine', 'Quarantine by reason', 'reason'],
  ['dead_letters', 'Dead letters', null],
  ['audit', 'Audit events', 'seq'],
];
const SUMMARY = [
  ['final_equity', 'Final equity'], ['start_equity', 'Start equity'], ['return', 'Return'],
  ['max_drawdown', 'Max drawdown'], ['open_positions', 'Open positions'], ['orders', 'Orders'],
  ['refused', 'Refused'], ['fills', 'Fills'], ['signals', 'Signals'], ['drift_events', 'Drift events'],
  ['quarantined', 'Quarantined'], ['last_time', 'Last bar'], ['committed', 'Committed through'],
];

function renderSummary(table) {
  const host = document.getElementById('summary');
  host.replaceChildren();
  const row = table.rows[0] || [];
  const value = k => {
    if (k === 'return') {
      const s = value('start_equity'), f = value('final_equity');
      return s && f != null ? f / s - 1 : null;
    }
    const i = table.columns.indexOf(k);
    return i < 0 ? undefined : row[i];
  };
  for (const [k, label] of SUMMARY) {
    const v = value(k);
    if (v === undefined) continue;
    const card = el('div', { className: 'card', 'data-key': k },
      el('div', { className: 'label', text: label }), el('div', { className: 'value', text: fmt(k, v) }));
    if (typeof v === 'number') card.setAttribute('data-value', String(v));
    host.append(card);
  }
}

function killPanel(source, id) {
  if (source !== 'db') return null;
  const token = el('input', { type: 'password', id: 'kill-token', placeholder: 'token (FDP_SERVE_TOKEN)', autocomplete: 'off' });
  const confirm = el('input', { type: 'text', id: 'kill-confirm', placeholder: `type ${id} to confirm`, autocomplete: 'off' });
  const out = el('p', { id: 'kill-result', className: 'muted' });
  const button = el('button', { id: 'kill-button', className: 'danger', text: 'Trip the kill switch' });
  button.addEventListener('click', async () => {
    out.textContent = 'Sending…';
    const r = await fetch(`/api/runs/db/${encodeURIComponent(id)}/kill`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token.value}` },
      body: JSON.stringify({ confirm: confirm.value }),
    });
    const text = (await r.text()).trim();
    out.textContent = r.ok ? `Tripped: ${text}` : `Refused (${r.status}): ${text}`;
    out.className = r.ok ? 'ok' : 'bad';
    out.setAttribute('data-status', String(r.status));
  });
  return el('section', { className: 'kill' }, el('h2', { text: 'Kill switch' }),
    el('p', { className: 'muted', text: 'Stops reading and sending orders in every fdp run using the same data directory; audited with your address.' }),
    el('div', { className: 'row' }, token, confirm, button), out);
}

async function runPage(source, id) {
  document.title = `${id} — findashpro`;
  document.getElementById('crumb').textContent = ` / ${id}`;
  const base = `/api/runs/${source}/${encodeURIComponent(id)}`;
  main.replaceChildren(
    el('h1', { text: id }, el('span', { className: 'tag', text: source === 'db' ? 'PostgreSQL' : 'backtest folder' })),
    el('div', { id: 'summary', className: 'cards' }),
    el('section', {}, el('div', { id: 'chart-equity', className: 'chart' }), el('div', { id: 'chart-drawdown', className: 'chart' })),
    el('section', {}, el('h2', { text: 'Models' }), el('div', { id: 'chart-models', className: 'chart' })),
    ...SECTIONS.map(([v, title]) => el('section', {}, el('h2', { text: title }), el('div', { id: `table-${v}`, className: 'scroll' }))),
    killPanel(source, id),
  );
  let refreshes = 0;
  const refresh = async () => {
    try {
      const names = ['summary', 'equity', 'models', ...SECTIONS.map(s => s[0])];
      const tables = await Promise.all(names.map(n => get(`${base}/${n}`)));
      const by = Object.fromEntries(names.map((n, i) => [n, tables[i]]));
      renderSummary(by.summary);
      drawEquity(by.equity);
      drawModels(by.models);
      for (const [v, , key] of SECTIONS) renderTable(document.getElementById(`table-${v}`), by[v], { key });
      refreshes += 1;
      document.body.setAttribute('data-ready', '1');
      document.body.setAttribute('data-refreshes', String(refreshes));
      setStatus(source === 'db' ? `live · ${new Date().toISOString().slice(11, 19)}Z` : 'backtest folder');
    } catch (e) {
      setStatus(e.message, true);
    }
  };
  await refresh();
  if (source === 'db') setInterval(refresh, POLL_MS);
}

const m = location.pathname.match(/^\/runs\/(db|dir)\/([^/]+)$/);
if (m) runPage(m[1], decodeURIComponent(m[2]));
else runsPage();

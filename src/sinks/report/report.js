// findashpro report: draws the tearsheet's charts with uPlot (inline) from the JSON in
// <script id="tearsheet"> (sortable.js sorts the tables).
// Drag across a time chart to zoom, double-click to zoom out; the legend shows the values under
// the cursor.
'use strict';
(function () {
  const T = JSON.parse(document.getElementById('tearsheet').textContent);
  const W = () => Math.min(1140, document.body.clientWidth - 20);
  const fmt = (v, d) => v == null || !isFinite(v) ? '—' :
    Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const pct = (v, d = 2) => v == null || !isFinite(v) ? '—' : fmt(v * 100, d) + ' %';
  const date = s => new Date(s * 1000).toISOString().slice(0, 10);
  const nan = a => a.map(v => (v == null || !isFinite(v)) ? null : v);
  const COLORS = ['#1f6feb', '#8c959f', '#cf222e', '#1a7f37', '#bf8700', '#8250df', '#0969da', '#bc4c00'];

  function host(id) {
    const h = document.getElementById(id);
    if (!h) return null;
    h.append(Object.assign(document.createElement('div'), { className: 'caption', textContent: h.dataset.title }));
    return h;
  }

  // A time chart: xs in Unix seconds, series [{label, values, color, fill}], y formatted by `yf`.
  function timeChart(id, xs, series, yf, opts = {}) {
    const h = host(id);
    if (!h || xs.length < 2) { if (h) h.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'Not enough data.' })); return; }
    const o = {
      width: W(), height: opts.height || 260,
      scales: { x: { time: true }, y: opts.log ? { distr: 3, range: (u, lo, hi) => [lo / 1.05, hi * 1.05] } : {} },
      axes: [
        { grid: { stroke: '#eaeef2' }, ticks: { stroke: '#d0d7de' } },
        { grid: { stroke: '#eaeef2' }, ticks: { stroke: '#d0d7de' }, size: 70, values: (u, vs) => vs.map(v => v == null ? '' : yf(v)), label: opts.ylabel || '' },
      ],
      series: [{ label: 'Date', value: (u, v) => v == null ? '—' : date(v) }].concat(series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i], width: s.width || 1.5,
        fill: s.fill || undefined, value: (u, v) => yf(v), paths: s.paths,
        points: { show: false },
      }))),
      cursor: { drag: { x: true, y: false } },
      hooks: opts.hooks || {},
    };
    return new uPlot(o, [xs].concat(series.map(s => nan(s.values))), h);
  }

  // Categories as bars: labels on x, groups [{label, values, color}].
  function barChart(id, labels, groups, yf) {
    const h = host(id);
    if (!h || !labels.length) { if (h) h.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'Not enough data.' })); return; }
    const n = groups.length;
    const bars = uPlot.paths.bars;
    const o = {
      width: W(), height: 240,
      scales: { x: { time: false, range: (u, lo, hi) => [lo - 0.6, hi + 0.6] } },
      axes: [
        { grid: { show: false }, values: (u, vs) => vs.map(v => Number.isInteger(v) && labels[v] !== undefined ? labels[v] : ''), space: 64 },
        { grid: { stroke: '#eaeef2' }, size: 70, values: (u, vs) => vs.map(v => v == null ? '' : yf(v)) },
      ],
      series: [{ label: 'x', value: (u, v) => v == null ? '—' : labels[v] }].concat(groups.map((g, i) => ({
        label: g.label, stroke: g.color || COLORS[i], fill: (g.color || COLORS[i]) + 'cc',
        value: (u, v) => yf(v), points: { show: false },
        // Two groups side by side: the first ends at the category, the second starts there.
        paths: bars({ size: [n > 1 ? 0.4 : 0.8, 60], align: n > 1 ? (i === 0 ? -1 : 1) : 0 }),
      }))),
      cursor: { drag: { x: false, y: false } },
    };
    return new uPlot(o, [labels.map((_, k) => k)].concat(groups.map(g => nan(g.values))), h);
  }

  // Drift events as dashed vertical lines on a time chart.
  const driftLines = u => {
    if (!T.ml || !T.ml.drifts.length) return;
    const c = u.ctx; c.save(); c.strokeStyle = 'rgba(207,34,46,0.45)'; c.setLineDash([3, 3]);
    for (const ev of T.ml.drifts) {
      const x = u.valToPos(ev[0], 'x', true);
      c.beginPath(); c.moveTo(x, u.bbox.top); c.lineTo(x, u.bbox.top + u.bbox.height); c.stroke();
    }
    c.restore();
  };
  const d = T.daily;
  timeChart('chart-cumulative', d.t, [
    { label: 'Strategy', values: d.cumulative, color: COLORS[0] },
    { label: 'Benchmark (' + T.benchmark + ')', values: d.bench_cumulative, color: COLORS[1] },
  ], v => pct(v, 1), { hooks: { draw: [driftLines] } });
  timeChart('chart-log', d.t, [
    { label: 'Strategy', values: d.cumulative.map(v => 1 + v), color: COLORS[0] },
    { label: 'Benchmark', values: d.bench_cumulative.map(v => 1 + v), color: COLORS[1] },
  ], v => fmt(v, 2), { log: true });

  // The worst drawdowns shaded behind the underwater curve.
  const worst = (T.strategy.drawdowns.worst || []).map(w => [Date.parse(w.start) / 1000, Date.parse(w.end) / 1000]);
  timeChart('chart-drawdown', d.t, [
    { label: 'Strategy', values: d.drawdown, color: COLORS[2], fill: 'rgba(207,34,46,0.18)' },
    { label: 'Benchmark', values: d.bench_drawdown, color: COLORS[1], width: 1 },
  ], v => pct(v, 1), {
    hooks: {
      drawClear: [u => {
        const c = u.ctx; c.save(); c.fillStyle = 'rgba(191,135,0,0.12)';
        for (const [a, b] of worst) {
          const x0 = u.valToPos(a, 'x', true), x1 = u.valToPos(b, 'x', true);
          c.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
        }
        c.restore();
      }],
    },
  });
  timeChart('chart-sharpe', d.t, [
    { label: '6 months', values: d.sharpe_6m, color: COLORS[0] },
    { label: '12 months', values: d.sharpe_12m, color: COLORS[4] },
  ], v => fmt(v, 2));
  timeChart('chart-vol', d.t, [
    { label: '6 months', values: d.vol_6m, color: COLORS[0] },
    { label: '12 months', values: d.vol_12m, color: COLORS[4] },
    { label: 'Benchmark 6 months', values: d.bench_vol_6m, color: COLORS[1], width: 1 },
  ], v => pct(v, 0));
  timeChart('chart-exposure', d.t, [
    { label: 'Gross', values: d.gross, color: COLORS[5] },
    { label: 'Net', values: d.net, color: COLORS[3] },
  ], v => pct(v, 0));
  const sec = T.sectors;
  timeChart('chart-sectors', sec.t, sec.sectors.map(([name, vs], i) => ({
    label: name, values: vs, color: COLORS[i % COLORS.length], paths: uPlot.paths.stepped({ align: 1 }),
  })), v => fmt(v, 0));
  barChart('chart-yearly', T.yearly.map(y => String(y[0])), [
    { label: 'Strategy', values: T.yearly.map(y => y[1]), color: COLORS[0] },
    { label: 'Benchmark', values: T.yearly.map(y => y[2]), color: '#8c959f' },
  ], v => pct(v, 0));
  const hist = T.histogram;
  barChart('chart-hist', hist.lower.map(l => pct(l + hist.width / 2, 1)), [
    { label: 'Days', values: hist.counts, color: COLORS[0] },
  ], v => fmt(v, 0));
  if (T.ml) {
    timeChart('chart-auc', T.ml.t, T.ml.auc.map(([name, vs], i) => ({
      label: name, values: vs, color: name === 'baseline' ? '#8c959f' : name === 'ensemble' ? COLORS[0] : COLORS[(i + 2) % COLORS.length],
      width: name === 'ensemble' ? 2.5 : 1.2,
    })), v => fmt(v, 3), { hooks: { draw: [driftLines] } });
  }

  // The trade list scrolls inside its own box (sortable.js sorts it).
  const trades = document.getElementById('trades');
  if (trades) {
    const wrap = Object.assign(document.createElement('div'), { id: 'trades-wrap' });
    trades.replaceWith(wrap); wrap.append(trades);
  }
  document.body.setAttribute('data-ready', '1');
})();

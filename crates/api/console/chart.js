// Small SVG charts for the figures the API reports (agent stats and performance, system
// trends). Each chart is a <figure> with a caption, the drawing (role="img" with a summary for
// screen readers) and the same numbers as a table under a <details>, so nothing is only visual.

import {h} from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 200;
const PAD = {top: 12, right: 12, bottom: 28, left: 56};

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A number for an axis or a table: at most three significant decimals. */
export function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString();
  if (a >= 10) return (Math.round(v * 10) / 10).toString();
  return (Math.round(v * 1000) / 1000).toString();
}

function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function frame(label, summary, svg, table) {
  return h('figure', {class: 'chart'},
    h('figcaption', {}, label),
    svg,
    h('details', {}, h('summary', {}, 'Numbers'), table),
    h('p', {class: 'visually-hidden'}, summary));
}

function yAxis(max, unit) {
  const ticks = [0, max / 2, max];
  const y = (v) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - v / max);
  return {
    y,
    nodes: ticks.map((t) => [
      s('line', {class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t)}),
      s('text', {class: 'tick', x: PAD.left - 6, y: y(t) + 4, 'text-anchor': 'end'},
        `${num(t)}${unit ? ` ${unit}` : ''}`),
    ]),
  };
}

/**
 * A line chart over time. `series`: `[{name, points: [{t, v}]}]` with `t` a time (ISO string,
 * Date or epoch ms) and `v` a number or null (a gap).
 */
export function lineChart({label, unit = '', series}) {
  const all = series.flatMap((se) => se.points.map((p) => ({t: +new Date(p.t), v: p.v})));
  const values = all.filter((p) => p.v !== null && p.v !== undefined);
  if (!values.length) return h('figure', {class: 'chart'}, h('figcaption', {}, label),
    h('p', {class: 'muted'}, 'No data in this window yet.'));
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t));
  const max = niceMax(Math.max(...values.map((p) => p.v)));
  const x = (t) => PAD.left + (W - PAD.left - PAD.right) * (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0));
  const {y, nodes} = yAxis(max, unit);
  const time = (t) => new Date(t).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  const lines = series.map((se, i) => {
    // A gap (null) breaks the line rather than drawing it down to zero.
    let d = '';
    let pen = 'M';
    for (const p of se.points) {
      if (p.v === null || p.v === undefined) { pen = 'M'; continue; }
      d += `${pen}${x(+new Date(p.t)).toFixed(1)},${y(p.v).toFixed(1)} `;
      pen = 'L';
    }
    const dots = se.points.length <= 60 ? se.points.filter((p) => p.v != null).map((p) =>
      s('circle', {class: `dot s${i % 4}`, cx: x(+new Date(p.t)), cy: y(p.v), r: 2.5})) : [];
    return [s('path', {class: `line s${i % 4}`, d}), dots];
  });
  const last = values.at(-1);
  const summary = `${label}: ${series.map((se) => {
    const vs = se.points.filter((p) => p.v != null).map((p) => p.v);
    return vs.length ? `${se.name} from ${num(Math.min(...vs))} to ${num(Math.max(...vs))}${unit ? ` ${unit}` : ''}` : `${se.name} no data`;
  }).join('; ')}.`;
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary,
    preserveAspectRatio: 'none'},
    nodes,
    s('text', {class: 'tick', x: PAD.left, y: H - 8}, time(t0)),
    s('text', {class: 'tick', x: W - PAD.right, y: H - 8, 'text-anchor': 'end'}, time(t1)),
    lines);
  const legend = series.length > 1 ? h('ul', {class: 'legend'}, series.map((se, i) =>
    h('li', {class: `s${i % 4}`}, se.name))) : null;
  const times = [...new Set(all.map((p) => p.t))].sort((a, b) => a - b);
  const table = h('table', {class: 'numbers'},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Time'),
      series.map((se) => h('th', {scope: 'col'}, `${se.name}${unit ? ` (${unit})` : ''}`)))),
    h('tbody', {}, times.map((t) => h('tr', {}, h('td', {}, new Date(t).toLocaleString()),
      series.map((se) => h('td', {}, num(se.points.find((p) => +new Date(p.t) === t)?.v)))))));
  const fig = frame(label, summary, svg, table);
  if (legend) fig.insertBefore(legend, fig.querySelector('details'));
  fig.dataset.last = String(last.v);
  return fig;
}

/** A horizontal bar chart: `bars: [{name, value}]`. */
export function barChart({label, unit = '', bars}) {
  if (!bars.length) return h('figure', {class: 'chart'}, h('figcaption', {}, label),
    h('p', {class: 'muted'}, 'No data yet.'));
  const max = niceMax(Math.max(...bars.map((b) => b.value || 0)));
  const row = 26;
  const height = bars.length * row + 8;
  const left = 140;
  const svg = s('svg', {class: 'bars', viewBox: `0 0 ${W} ${height}`, role: 'img',
    'aria-label': `${label}: ${bars.map((b) => `${b.name} ${num(b.value)}${unit ? ` ${unit}` : ''}`).join(', ')}`},
    bars.map((b, i) => {
      const w = (W - left - 80) * ((b.value || 0) / max);
      const y = 4 + i * row;
      return [
        s('text', {class: 'tick', x: left - 6, y: y + 15, 'text-anchor': 'end'},
          b.name.length > 20 ? `${b.name.slice(0, 19)}…` : b.name),
        s('rect', {class: `bar s${i % 4}`, x: left, y, width: Math.max(w, 1), height: row - 8}),
        s('text', {class: 'tick', x: left + w + 6, y: y + 15}, `${num(b.value)}${unit ? ` ${unit}` : ''}`),
      ];
    }));
  const table = h('table', {class: 'numbers'},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Name'),
      h('th', {scope: 'col'}, unit ? `Value (${unit})` : 'Value'))),
    h('tbody', {}, bars.map((b) => h('tr', {}, h('td', {}, b.name), h('td', {}, num(b.value))))));
  return frame(label, svg.getAttribute('aria-label'), svg, table);
}

// The dashboard's script: refreshes the live sections every second and draws the chart of
// gateway errors by cause (stacked, 10 s buckets) with uPlot. Without it the page still
// shows everything, refreshed every 5 s by <noscript>.
'use strict'

const REFRESH_MS = 1000
/** Colours of the causes, in cause table order: the same as the .cN classes of dashboard.css. */
const COLORS = ['#6a3d9a', '#8e63b5', '#777', '#b15928', '#a6761d', '#e31a1c', '#ff7f00', '#c51b7d', '#8c510a', '#1f78b4', '#4575b4', '#d95f02',
  '#33a02c', '#1b9e77', '#e7298a', '#66a61e', '#7570b3', '#999', '#444', '#000', '#333', '#555', '#555']

let plot = null
let plotKeys = ''
function readSeries() {
  const el = document.getElementById('series')
  return el ? JSON.parse(el.textContent) : { times: [], causes: {} }
}

/** Draws (or updates) the stacked chart: each cause's band is the sum of it and the causes below it. */
function drawChart() {
  const { times, causes } = readSeries()
  const container = document.getElementById('chart')
  if (!container || typeof uPlot === 'undefined') return
  const keys = Object.keys(causes)
  const xs = times.map((t) => t / 1000)
  const raw = keys.map((k) => causes[k])
  const stacked = []
  let acc = new Array(xs.length).fill(0)
  for (const r of raw) {
    acc = acc.map((v, i) => v + r[i])
    stacked.push(acc)
  }
  // Drawn top band first so that each lower band paints over the one above it.
  const order = keys.map((_, i) => i).reverse()
  const data = [xs, ...order.map((i) => stacked[i])]
  if (keys.length === 0) data.push(new Array(xs.length).fill(0))
  const sig = keys.join(',') + '|' + container.clientWidth
  if (plot !== null && sig === plotKeys) {
    plot.setData(data)
    return
  }
  if (plot !== null) plot.destroy()
  plotKeys = sig
  const colors = window.PORTICO_CAUSE_COLORS || {}
  const series = [{}]
  if (keys.length === 0) series.push({ label: 'no gateway error', stroke: '#2a7d2a', width: 1 })
  for (const i of order) {
    const c = colors[keys[i]] || COLORS[i % COLORS.length]
    series.push({
      label: keys[i], stroke: c, fill: c, width: 1, paths: uPlot.paths.bars({ size: [1, 8], align: 1 }), points: { show: false },
      // The legend shows the cause's own count, not the stacked sum.
      value: (u, v, si, idx) => (idx == null ? '' : String(raw[order[si - 1]][idx])),
    })
  }
  plot = new uPlot({
    width: Math.max(320, container.clientWidth - 2), height: 220, series,
    axes: [{}, { label: 'errors / 10 s', size: 50 }],
    // The x scale runs to the end of the newest bucket, so its bar is drawn whole.
    scales: { x: { time: true, range: (u, min, max) => [min, max + 10] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    cursor: { drag: { x: false, y: false } },
  }, data, container)
}

function causeColors() {
  // The server's class per cause gives the colour index: keep chart and badges alike.
  const out = {}
  for (const el of document.querySelectorAll('.cause')) {
    const m = /\bc(\d+)\b/.exec(el.className)
    const name = el.textContent.split('\u00a0')[0]
    if (m && name) out[name] = COLORS[Number(m[1])]
  }
  window.PORTICO_CAUSE_COLORS = Object.assign(window.PORTICO_CAUSE_COLORS || {}, out)
}

async function refresh() {
  const live = document.getElementById('live')
  try {
    const res = await fetch('/dashboard/sections', { cache: 'no-store', credentials: 'same-origin' })
    if (res.status === 401) {
      location.href = '/login'
      return
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    const html = await res.text()
    const open = new Set([...document.querySelectorAll('details.failure[open]')].map((d) => d.dataset.id))
    const sections = document.getElementById('sections')
    sections.innerHTML = html
    for (const d of sections.querySelectorAll('details.failure')) if (open.has(d.dataset.id)) d.open = true
    causeColors()
    drawChart()
    live.className = 'live'
    live.textContent = 'live'
  } catch (err) {
    live.className = 'live stale'
    live.textContent = 'not updating'
    live.title = String(err)
  }
}

function start() {
  causeColors()
  drawChart()
  // One refresh at a time: the next is scheduled when the previous ends.
  const loop = () => refresh().finally(() => setTimeout(loop, REFRESH_MS))
  setTimeout(loop, REFRESH_MS)
  let resize = null
  window.addEventListener('resize', () => {
    clearTimeout(resize)
    resize = setTimeout(drawChart, 200)
  })
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start)
else start()

/// The web view's one page: plain HTML, CSS and a script, no outside files. It draws
/// `/api/state` and applies `/events` (server-sent events) as they come: a migration's
/// progress bar moves, a finished migration moves its VM under its new host at once.
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>VIOLIN federation</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 18px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .live { font-size: 12px; color: #9fe3a3; }
  header .live.off { color: #f0a0a0; }
  main { display: grid; grid-template-columns: 2fr 1fr; gap: 14px; padding: 14px 18px; }
  section { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: 14px; margin: 4px 0 8px; color: #555; text-transform: uppercase; letter-spacing: .04em; }
  .domain { margin-bottom: 10px; }
  .domain > h3 { font-size: 13px; margin: 4px 0; color: #345; }
  .hosts { display: flex; flex-wrap: wrap; gap: 10px; }
  .host { border: 1px solid #d5d9e0; border-radius: 6px; padding: 8px; min-width: 190px; }
  .host.draining { border-style: dashed; opacity: .7; }
  .host .name { font-weight: 600; }
  .bar { height: 6px; background: #e6e8ec; border-radius: 3px; margin: 4px 0; overflow: hidden; }
  .bar > div { height: 100%; background: #4a7bd0; }
  .vm { display: inline-block; margin: 2px; padding: 2px 6px; border-radius: 10px; font-size: 12px; color: #fff; }
  .vm.moving { outline: 2px dashed #e08a00; }
  .migration { margin: 6px 0; }
  .migration .bar > div { background: #e08a00; }
  .decision { border-top: 1px solid #eee; padding: 5px 0; font-size: 12px; }
  .decision .kind { font-weight: 600; }
  .muted { color: #888; font-size: 12px; }
  svg { width: 100%; height: 170px; }
  .wide { grid-column: 1 / span 2; }
</style>
</head>
<body>
<header><h1>VIOLIN federation</h1><span id="summary" class="muted"></span><span id="live" class="live off">connecting…</span></header>
<main>
  <section><h2>Domains, hosts and VMs</h2><div id="federation"></div></section>
  <section><h2>Migrations in progress</h2><div id="migrations"><p class="muted">none</p></div>
           <h2>Decisions</h2><div id="decisions"></div></section>
  <section class="wide"><h2>Host scores over time</h2><svg id="chart" viewBox="0 0 1000 170" preserveAspectRatio="none"></svg><div id="legend" class="muted"></div></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("access_token");
const q = token ? "?access_token=" + encodeURIComponent(token) : "";
let state = { domains: [], hosts: [], violins: [], migrations: [], decisions: [], scores: [] };
const palette = ["#4a7bd0", "#2e9d6a", "#b6509e", "#d2692e", "#6b5bd6", "#3a9bb0", "#a08a1e", "#c0434f"];
const colorOf = name => palette[[...name].reduce((a, c) => a + c.charCodeAt(0), 0) % palette.length];
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "style") e.style.cssText = v; else e.setAttribute(k, v); }
  for (const k of kids) e.append(k);
  return e;
};
const mb = b => (b / 1048576).toFixed(1) + " MiB";

function render() {
  const moving = new Set(state.migrations.map(m => m.vm));
  const fed = document.getElementById("federation");
  fed.replaceChildren();
  for (const d of state.domains) {
    const hosts = el("div", { class: "hosts" });
    for (const h of state.hosts.filter(h => h.domain === d)) {
      const card = el("div", { class: "host" + (h.draining ? " draining" : ""), "data-host": h.id },
        el("div", { class: "name" }, h.id + (h.draining ? " (draining)" : "")),
        el("div", { class: "muted" }, `score ${h.score.toFixed(2)} · load ${h.load.toFixed(2)} of ${h.cores} cores · ${h.memory_mb} MiB`),
        el("div", { class: "bar" }, el("div", { style: `width:${Math.min(100, 100 * h.load / Math.max(1, h.cores))}%` })));
      for (const v of h.vms) {
        card.append(el("span", { class: "vm" + (moving.has(v.name) ? " moving" : ""), "data-vm": v.name, title: "VIOLIN " + v.violin,
                                 style: "background:" + colorOf(v.violin || "?") }, v.name));
      }
      hosts.append(card);
    }
    fed.append(el("div", { class: "domain", "data-domain": d }, el("h3", {}, "domain " + d), hosts));
  }
  const mig = document.getElementById("migrations");
  mig.replaceChildren();
  if (!state.migrations.length) mig.append(el("p", { class: "muted" }, "none"));
  for (const m of state.migrations) {
    const total = m.total_bytes || 0, left = m.remaining_bytes || 0;
    const done = total > 0 ? 100 * (1 - left / total) : 0;
    mig.append(el("div", { class: "migration", "data-migration": m.vm, "data-remaining": String(left) },
      el("div", {}, `${m.vm}: ${m.from} → ${m.to} · ${m.phase}`),
      el("div", { class: "bar" }, el("div", { style: `width:${done.toFixed(0)}%` })),
      el("div", { class: "muted" }, `${mb(left)} left · ${mb(m.rate_bps || 0)}/s`)));
  }
  const dec = document.getElementById("decisions");
  dec.replaceChildren();
  for (const d of state.decisions) {
    dec.append(el("div", { class: "decision" }, el("span", { class: "kind" }, d.kind + " "), el("span", { class: "muted" }, `${d.time} · ${d.outcome}`),
                  el("div", {}, d.reason || ""), d.effect ? el("div", { class: "muted" }, "effect: " + d.effect) : ""));
  }
  const vms = state.hosts.reduce((n, h) => n + h.vms.length, 0);
  document.getElementById("summary").textContent =
    `${state.domains.length} domains · ${state.hosts.length} hosts · ${state.violins.length} VIOLINs · ${vms} VMs · score deviation ${(state.deviation || 0).toFixed(3)}`;
  chart();
}

function chart() {
  const svg = document.getElementById("chart"), pts = state.scores;
  svg.replaceChildren();
  if (pts.length < 2) return;
  const hosts = [...new Set(pts.flatMap(p => Object.keys(p.scores)))].sort();
  const t0 = pts[0].time, t1 = pts[pts.length - 1].time;
  const top = Math.max(1, ...pts.flatMap(p => Object.values(p.scores)));
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const h of hosts) {
    const line = pts.filter(p => h in p.scores)
      .map(p => `${(1000 * (p.time - t0) / Math.max(1, t1 - t0)).toFixed(1)},${(165 - 160 * p.scores[h] / top).toFixed(1)}`).join(" ");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    path.setAttribute("points", line); path.setAttribute("fill", "none"); path.setAttribute("stroke", colorOf(h)); path.setAttribute("stroke-width", "2");
    svg.append(path);
    legend.append(el("span", { style: "color:" + colorOf(h) + ";margin-right:12px" }, "■ " + h));
  }
}

let pending = null;
function refresh() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    try { state = await (await fetch("/api/state" + q)).json(); render(); } catch (e) { /* the next event or tick tries again */ }
  }, 150);
}

function listen() {
  const es = new EventSource("/events" + q);
  const live = document.getElementById("live");
  es.onopen = () => { live.textContent = "live"; live.className = "live"; };
  es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  const on = (topic, f) => es.addEventListener(topic, e => f(JSON.parse(e.data)));
  on("executor.migration_started", b => {
    state.migrations = state.migrations.filter(m => m.vm !== b.vm).concat([{ vm: b.vm, from: b.from, to: b.to, phase: "preparing" }]);
    render();
  });
  on("executor.migration_progress", b => {
    const m = state.migrations.find(m => m.vm === b.vm);
    if (m) { Object.assign(m, b); render(); } else refresh();
  });
  on("executor.migration_completed", b => {
    // The VM is under its destination at once; the state that follows confirms it.
    for (const h of state.hosts) h.vms = h.vms.filter(v => v.name !== b.vm);
    const to = state.hosts.find(h => h.id === b.to);
    const violin = (state.violins.find(v => v.vms.includes(b.vm)) || {}).name || "";
    if (to) to.vms.push({ name: b.vm, violin });
    state.migrations = state.migrations.filter(m => m.vm !== b.vm);
    render(); refresh();
  });
  on("executor.migration_failed", b => { state.migrations = state.migrations.filter(m => m.vm !== b.vm); render(); refresh(); });
  on("web.scores", b => { state.scores = state.scores.concat([b]).slice(-200); chart(); });
  for (const t of ["policy.decided", "policy.violin_phase_changed", "policy.vm_placed", "policy.vm_restarted", "policy.drift_detected",
                   "policy.host_draining", "executor.vm_created", "executor.vm_destroyed"]) on(t, refresh);
}

refresh();
listen();
setInterval(refresh, 10000);
</script>
</body>
</html>
"""#
}

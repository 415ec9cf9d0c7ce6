// asynccluster dashboard (issue 12): one EventSource, canvas charts, no dependencies.
// State is kept on window.dashboard (tests and curious people can read it).
"use strict";
(() => {
  const SPAN = 600; // seconds on the charts' x axis: the master keeps 600 points
  const MAX_EVENTS = 500;
  const MAX_LOGS = 1000;
  const LEVELS = { trace: 5, debug: 10, info: 20, warning: 30, error: 40, critical: 50 };
  const SLOT_COLORS = ["#4aa3df", "#e0a030", "#9b7ede", "#4caf50", "#e05050", "#3fc1c9", "#d97bb0", "#b0b040"];
  const state = {
    history: [], workers: [], cluster: {}, events: [], logs: [], frames: 0, draws: 0,
    eventSeq: 0, logSeq: 0, connected: false,
  };
  window.dashboard = state;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) node.append(child);
    return node;
  }
  const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.floor(seconds);
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.floor(s / 60)}m`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
  }

  // ------------------------------------------------------------ the token (never sent in a URL)

  const hashToken = location.hash.match(/token=([^&]+)/);
  if (hashToken) {
    sessionStorage.setItem("asynccluster-token", decodeURIComponent(hashToken[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("token").value = sessionStorage.getItem("asynccluster-token") || "";
  $("token").addEventListener("input", () => sessionStorage.setItem("asynccluster-token", $("token").value));

  // ------------------------------------------------------------ charts

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // series: [{label, color, values: [[t, v], ...], fill}] ; opts.stacked adds them up.
  function drawChart(canvas, series, opts = {}) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(100, canvas.clientWidth), height = Math.max(60, canvas.clientHeight);
    if (canvas.width !== Math.round(width * dpr)) canvas.width = Math.round(width * dpr);
    if (canvas.height !== Math.round(height * dpr)) canvas.height = Math.round(height * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 44, right = 6, top = 6, bottom = 16;
    const end = state.history.length ? state.history[state.history.length - 1].t : Date.now() / 1000;
    const start = end - SPAN;
    let max = 0;
    const stacks = [];
    let base = null;
    for (const s of series) {
      const values = s.values.map(([t, v], i) => {
        const below = opts.stacked && base ? base[i][1] : 0;
        return [t, v === null || v === undefined ? null : v + below];
      });
      for (const [, v] of values) if (v !== null && v > max) max = v;
      stacks.push(values);
      if (opts.stacked) base = values.map(([t, v]) => [t, v || 0]);
    }
    const top_ = niceMax(max * 1.05);
    const x = (t) => left + ((t - start) / SPAN) * (width - left - right);
    const y = (v) => top + (1 - v / top_) * (height - top - bottom);
    ctx.font = "10px system-ui, sans-serif";
    ctx.strokeStyle = "#2a333d";
    ctx.fillStyle = "#8593a0";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (top_ * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y(v)) + 0.5);
      ctx.lineTo(width - right, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillText(v >= 100 ? v.toFixed(0) : +v.toFixed(2) + "", 2, y(v) + 3);
    }
    for (let m = 0; m <= 10; m += 2) ctx.fillText(m === 0 ? "now" : `-${m}m`, x(end - m * 60) - 8, height - 3);
    if (opts.stacked) {
      // Bands: each series filled from the one below it up to its own (cumulative) line.
      stacks.forEach((values, index) => {
        const below = index ? stacks[index - 1] : values.map(([t]) => [t, 0]);
        const points = values.filter(([t, v]) => v !== null && t >= start);
        if (points.length < 2) return;
        ctx.beginPath();
        points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
        below.filter(([t]) => t >= start).reverse().forEach(([t, v]) => ctx.lineTo(x(t), y(v || 0)));
        ctx.closePath();
        ctx.globalAlpha = 0.35;
        ctx.fillStyle = series[index].color;
        ctx.fill();
        ctx.globalAlpha = 1;
      });
    }
    stacks.forEach((values, index) => {
      const s = series[index];
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      for (const [t, v] of values) {
        if (v === null || t < start) { drawing = false; continue; }
        if (drawing) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
        drawing = true;
      }
      ctx.stroke();
    });
    canvas.dataset.points = String(series.length ? series[0].values.length : 0);
    canvas.dataset.max = String(max);
  }

  function legend(name, series) {
    const node = document.querySelector(`.legend[data-chart="${name}"]`);
    node.replaceChildren(...series.map((s) => {
      const last = s.values.length ? s.values[s.values.length - 1][1] : null;
      const item = el("i", { textContent: `■ ${s.label} ${fmt(last, s.digits ?? 1)}` });
      item.style.color = s.color;
      return item;
    }));
  }

  function seriesOf(key, label, color, digits) {
    return { label, color, digits, values: state.history.map((p) => [p.t, p[key] ?? null]) };
  }

  function drawCharts() {
    const slots = [...new Set(state.history.flatMap((p) => Object.keys(p.slots || {})))].sort((a, b) => a - b);
    const rps = [seriesOf("rps", "total", "#d6dde4", 0)].concat(slots.map((slot) => ({
      label: `w${slot}`, color: SLOT_COLORS[slot % SLOT_COLORS.length], digits: 0,
      values: state.history.map((p) => [p.t, p.slots && slot in p.slots ? p.slots[slot] : null]),
    })));
    const charts = {
      rps: [rps, {}],
      latency: [[seriesOf("p50", "p50", "#4caf50", 2), seriesOf("p90", "p90", "#e0a030", 2),
        seriesOf("p99", "p99", "#e05050", 2)], {}],
      status: [[seriesOf("2xx", "2xx", "#4caf50", 0), seriesOf("3xx", "3xx", "#4aa3df", 0),
        seriesOf("4xx", "4xx", "#e0a030", 0), seriesOf("5xx", "5xx", "#e05050", 0)], { stacked: true }],
      load: [[seriesOf("in_flight", "in flight", "#e0a030", 0), seriesOf("connections", "conns", "#4aa3df", 0)], {}],
      cpu: [[seriesOf("cpu", "workers", "#4aa3df", 1), seriesOf("master_cpu", "master", "#e0a030", 1)], {}],
      mem: [[seriesOf("rss", "RSS", "#9b7ede", 1), seriesOf("loop_lag", "lag", "#e05050", 2)], {}],
    };
    for (const [name, [series, opts]] of Object.entries(charts)) {
      drawChart($(`chart-${name}`), series, opts);
      legend(name, series);
    }
    state.draws += 1;
  }

  // ------------------------------------------------------------ summary, workers

  function renderSummary() {
    const c = state.cluster, last = state.history[state.history.length - 1] || {};
    $("cluster-name").textContent = c.name || "asynccluster";
    document.title = `${c.name || "asynccluster"} · dashboard`;
    const badge = $("cluster-state");
    badge.textContent = state.connected ? c.state || "?" : "disconnected";
    badge.className = `state ${state.connected ? c.state : "disconnected"}`;
    const parts = [
      ["ready", `${c.ready ?? "–"}/${c.desired ?? "–"}`], ["req/s", fmt(last.rps, 0)], ["p99", `${fmt(last.p99, 2)} ms`],
      ["requests", c.requests ?? "–"], ["5xx", c.status ? c.status["5xx"] : "–"], ["restarts", c.restarts ?? "–"],
      ["master CPU", `${fmt(c.master_cpu)} %`], ["up", duration(c.uptime)], ["on", c.address || "–"], ["pid", c.pid ?? "–"],
    ];
    $("summary").replaceChildren(...parts.flatMap(([k, v]) => [`${k} `, el("b", { textContent: String(v) }), "  "]));
  }

  function renderWorkers() {
    const rows = state.workers.map((w) => {
      const restart = el("button", { type: "button", className: "restart", textContent: "restart", title: `restart slot ${w.slot}` });
      restart.dataset.slot = w.slot;
      const cells = [w.slot, w.pid, w.incarnation, el("span", { className: `state ${w.state}`, textContent: w.state }),
        fmt(w.rps, 1), fmt(w.p50, 2), fmt(w.p90, 2), fmt(w.p99, 2), w.status["2xx"], w.status["3xx"], w.status["4xx"],
        w.status["5xx"], w.in_flight, w.connections, fmt(w.loop_lag, 2), fmt(w.cpu, 1), fmt(w.rss, 1), w.restarts,
        duration(w.uptime), restart];
      const tr = el("tr", {}, ...cells.map((c) => el("td", {}, c instanceof Node ? c : String(c ?? "–"))));
      tr.dataset.slot = w.slot;
      tr.dataset.pid = w.pid;
      tr.dataset.state = w.state;
      return tr;
    });
    $("workers").tBodies[0].replaceChildren(...rows);
    const select = $("log-worker"), known = new Set([...select.options].map((o) => o.value));
    for (const w of state.workers) {
      if (!known.has(String(w.slot))) select.append(el("option", { value: String(w.slot), textContent: `worker ${w.slot}` }));
    }
  }

  // ------------------------------------------------------------ timeline and log

  function eventItem(e) {
    const li = el("li", {}, el("time", { textContent: clock(e.time) }), el("span", { className: `kind ${e.kind}`, textContent: e.kind }),
      e.slot !== null && e.slot !== undefined ? `[${e.slot}] ` : "", e.text);
    li.dataset.kind = e.kind;
    if (e.stacks) li.append(el("details", {}, el("summary", { textContent: "stacks" }), el("pre", { textContent: e.stacks })));
    return li;
  }

  function addEvents(events) {
    const list = $("timeline");
    for (const e of events) {
      const existing = list.querySelector(`li[data-seq="${e.seq}"]`);
      if (e.seq <= state.eventSeq && !existing) continue;
      const item = eventItem(e);
      item.dataset.seq = e.seq;
      if (existing) existing.replaceWith(item); else list.prepend(item);
      state.eventSeq = Math.max(state.eventSeq, e.seq);
      state.events.push(e);
    }
    state.events = state.events.slice(-MAX_EVENTS);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function logVisible(line) {
    const worker = $("log-worker").value, level = Number($("log-level").value);
    if (worker === "master" && line.slot !== null) return false;
    if (worker !== "" && worker !== "master" && String(line.slot) !== worker) return false;
    return (LEVELS[line.level] ?? 20) >= level;
  }

  function logLine(line) {
    // A worker's own line (stream out/err) is shown as it was written: it has its own tag.
    const text = line.stream === "out" || line.stream === "err"
      ? line.text : `${line.level.toUpperCase().padEnd(7)} [${line.tag}] ${line.text}`;
    return el("div", { className: line.level }, el("time", { textContent: clock(line.time) }), text);
  }

  function addLogs(lines, rerender = false) {
    const box = $("log");
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    const fresh = lines.filter((l) => l.seq > state.logSeq);
    for (const l of fresh) state.logSeq = Math.max(state.logSeq, l.seq);
    state.logs = state.logs.concat(fresh).slice(-MAX_LOGS);
    if (rerender) box.replaceChildren(...state.logs.filter(logVisible).map(logLine));
    else box.append(...fresh.filter(logVisible).map(logLine));
    while (box.children.length > MAX_LOGS) box.firstChild.remove();
    if (atBottom || rerender) box.scrollTop = box.scrollHeight;
  }
  $("log-worker").addEventListener("change", () => addLogs([], true));
  $("log-level").addEventListener("change", () => addLogs([], true));

  // ------------------------------------------------------------ the stream

  function applyFrame(frame) {
    if (frame.cluster) state.cluster = frame.cluster;
    if (frame.workers) state.workers = frame.workers;
    if (frame.point) {
      state.history.push(frame.point);
      if (state.history.length > SPAN) state.history.splice(0, state.history.length - SPAN);
    }
    addEvents(frame.events || []);
    addLogs(frame.logs || []);
    if (frame.logs_skipped) state.logsSkipped = (state.logsSkipped || 0) + frame.logs_skipped;
    state.frames += 1;
    renderSummary();
    renderWorkers();
    drawCharts();
  }

  function connect() {
    const source = new EventSource("/api/stream");
    source.addEventListener("snapshot", (message) => {
      const snap = JSON.parse(message.data);
      state.connected = true;
      state.history = snap.history || [];
      state.cluster = snap.cluster || {};
      state.workers = snap.workers || [];
      addEvents(snap.events || []);
      addLogs(snap.logs || [], true);
      renderSummary();
      renderWorkers();
      drawCharts();
    });
    source.addEventListener("frame", (message) => { state.connected = true; applyFrame(JSON.parse(message.data)); });
    source.addEventListener("error", () => { state.connected = false; renderSummary(); });
  }

  // ------------------------------------------------------------ actions

  async function act(name, body, button) {
    const result = $("action-result");
    const token = $("token").value.trim();
    result.className = "";
    result.textContent = `${name}…`;
    if (button) button.disabled = true;
    try {
      const response = await fetch(`/api/${name}`, {
        method: "POST", cache: "no-store", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Asynccluster-Token": token },
        body: JSON.stringify(body || {}),
      });
      const data = await response.json().catch(() => ({}));
      const ok = response.ok && data.ok !== false;
      result.className = ok ? "ok" : "error";
      result.textContent = `${response.status}: ${ok ? data.message || "done" : data.error || data.message || "failed"}`;
    } catch (err) {
      result.className = "error";
      result.textContent = `${name}: ${err}`;
    } finally {
      if (button) button.disabled = false;
    }
  }

  $("reload").addEventListener("click", (e) => act("reload", {}, e.currentTarget));
  $("scale-up").addEventListener("click", (e) => act("scale", { count: "+1" }, e.currentTarget));
  $("scale-down").addEventListener("click", (e) => act("scale", { count: "-1" }, e.currentTarget));
  $("scale-to").addEventListener("click", (e) => act("scale", { count: String($("scale-count").value) }, e.currentTarget));
  $("workers").addEventListener("click", (e) => {
    const button = e.target.closest("button.restart");
    if (button) act("restart", { slot: Number(button.dataset.slot) }, button);
  });

  // ------------------------------------------------------------ grouped errors (issue 15)

  async function refreshErrors() {
    try {
      const report = await (await fetch("/api/errors", { cache: "no-store" })).json();
      const rows = (report.groups || []).map((g) => {
        const details = el("details", {}, el("summary", { textContent: g.message }), el("pre", { textContent: g.traceback }));
        const cells = [String(g.count), g.type, details, g.frame, g.request, (g.workers || []).join(","), clock(g.last_seen)];
        const tr = el("tr", {}, ...cells.map((c) => el("td", {}, c)));
        tr.dataset.group = g.id;
        return tr;
      });
      $("errors").tBodies[0].replaceChildren(...rows);
      $("errors-total").textContent = report.total ? `${report.total} in ${rows.length} groups` : "none";
    } catch (err) { /* the next refresh tries again */ }
  }

  // ------------------------------------------------------------ other clusters of this user

  async function refreshClusters() {
    try {
      const clusters = await (await fetch("/api/clusters", { cache: "no-store" })).json();
      const links = clusters.filter((c) => !c.self).map((c) => (c.url
        ? el("a", { href: c.url, textContent: `${c.name} (${c.workers})`, title: `${c.state}` })
        : el("span", { textContent: `${c.name} (no --admin)` })));
      $("clusters").replaceChildren(...(links.length ? ["other clusters: ", ...links] : []));
    } catch (err) { /* the next refresh tries again */ }
  }

  window.addEventListener("resize", drawCharts);
  connect();
  refreshClusters();
  setInterval(refreshClusters, 15000);
  refreshErrors();
  setInterval(refreshErrors, 5000);
})();

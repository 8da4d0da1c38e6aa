// The dagexec run report viewer: graph, timeline, tasks, dead letters and meta of one run,
// from the JSON document inlined in the page. It fetches nothing. Long lists (timeline rows,
// table rows) draw only the rows in view, so 10,000 tasks stay responsive.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("dagexec-data").textContent);
  const T = D.tasks;
  const N = T.name.length;
  const STATES = D.states;
  const KINDS = D.kinds;
  const ROW = 22;
  const SVGNS = "http://www.w3.org/2000/svg";
  const KIND_LABEL = {
    ok: "attempt completed", retried: "attempt failed, retried", failed: "attempt failed (final)",
    cancelled: "attempt cancelled", interrupted: "attempt cut short by a crash", running: "still running",
    retry_wait: "waiting to retry (backoff or open breaker)", queued: "waiting to start (slot, breaker or start-up)",
  };
  const index = new Map(T.name.map((n, i) => [n, i]));
  const children = Array.from({ length: N }, () => []);
  T.deps.forEach((ds, i) => ds.forEach((d) => children[d].push(i)));
  const groups = D.groups;
  const listeners = [];
  let selected = -1;

  // ---- helpers --------------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "class") e.className = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of kids) if (c != null) e.append(c);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  const stateColor = (s) => `var(--${s})`;
  function ms(v) {
    if (v == null) return "–";
    const a = Math.abs(v);
    if (a < 1) return v.toFixed(2) + " ms";
    if (a < 1000) return v.toFixed(a < 10 ? 1 : 0) + " ms";
    if (a < 60000) return (v / 1000).toFixed(a < 10000 ? 2 : 1) + " s";
    const m = Math.floor(v / 60000);
    return m + " min " + Math.round((v % 60000) / 1000) + " s";
  }
  function when(ts) {
    if (ts == null) return "–";
    const d = new Date(ts * 1000);
    const p = (x) => String(x).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function stateTag(s) {
    return el("span", { class: "state-tag" }, el("i", { class: "dot", style: `background:${stateColor(s)}` }), s.replace("_", " "));
  }
  function traceLink(id) {
    if (!id || !D.trace_url) return null;
    const a = el("a", { href: D.trace_url.split("{trace_id}").join(encodeURIComponent(id)), target: "_blank", rel: "noopener noreferrer", text: "trace" });
    a.title = id;
    return a;
  }
  function short(text, n) {
    if (!text) return "";
    const line = text.trim().split("\n")[0];
    return line.length > n ? line.slice(0, n - 1) + "…" : line;
  }
  function select(i, from) {
    selected = i;
    for (const f of listeners) f(i, from);
  }

  // ---- header ---------------------------------------------------------------------------------
  function header() {
    const run = D.run;
    document.getElementById("dag-name").textContent = D.kind === "run" ? run.dag : `DAG ${run.dag}`;
    document.getElementById("run-id").textContent = D.kind === "run" ? run.run_id : "before any run";
    const st = document.getElementById("status");
    if (D.kind === "run") {
      st.textContent = run.status;
      st.style.background = { completed: "var(--completed)", failed: "var(--failed)", cancelled: "var(--cancelled)", crashed: "var(--dead_lettered)", running: "var(--running)" }[run.status] || "var(--muted)";
    } else st.remove();
    const facts = document.getElementById("facts");
    const fact = (k, v) => facts.append(el("span", null, k + " ", el("b", { text: v })));
    fact("tasks", String(N));
    if (D.kind === "run") {
      fact("started", when(run.started_at));
      fact("duration", ms(run.duration_ms) + ({ running: " so far", crashed: " until its last change" }[run.status] || ""));
      if (run.trace_id) {
        fact("trace", run.trace_id.slice(0, 8) + "… ");
        const link = traceLink(run.trace_id);
        if (link) facts.lastChild.append(link);
      }
    }
    const counts = {};
    T.state.forEach((s) => (counts[s] = (counts[s] || 0) + 1));
    const box = document.getElementById("counts");
    const filter = document.getElementById("state-filter");
    Object.keys(counts).sort((a, b) => a - b).forEach((s) => {
      const name = STATES[s];
      const chip = el("button", { class: "chip", type: "button", title: `show only ${name} tasks in the table` },
        el("i", { class: "dot", style: `background:${stateColor(name)}` }), `${counts[s]} ${name.replace("_", " ")}`);
      chip.addEventListener("click", () => { filter.value = filter.value === String(s) ? "" : String(s); filter.dispatchEvent(new Event("change")); });
      box.append(chip);
      filter.append(el("option", { value: String(s), text: `${name} (${counts[s]})` }));
    });
  }

  // ---- graph ----------------------------------------------------------------------------------
  function graph() {
    const host = document.getElementById("graph");
    const note = document.getElementById("graph-note");
    const g = new dagre.graphlib.Graph({ multigraph: false });
    const big = groups ? groups.labels.length > 60 : N > 120;
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 46, marginx: 16, marginy: 16, ranker: big ? "longest-path" : "network-simplex" });
    g.setDefaultEdgeLabel(() => ({}));
    const nodes = [];
    if (groups) {
      const members = groups.labels.map(() => []);
      groups.of.forEach((gi, i) => members[gi].push(i));
      groups.labels.forEach((label, gi) => {
        const count = members[gi].length;
        const text = count > 1 ? `${label}  ×${count}` : T.name[members[gi][0]];
        nodes.push({ id: "g" + gi, label: text, members: members[gi] });
        g.setNode("g" + gi, { width: Math.max(110, Math.min(260, 24 + text.length * 7)), height: 40 });
      });
      groups.edges.forEach(([a, b]) => g.setEdge("g" + a, "g" + b));
      note.textContent = `${N} tasks in ${groups.labels.length} groups of one name pattern and depth: click a group to list its tasks; drag to pan, wheel to zoom`;
    } else {
      for (let i = 0; i < N; i++) {
        nodes.push({ id: "t" + i, label: T.name[i], members: [i] });
        g.setNode("t" + i, { width: Math.min(240, 26 + T.name[i].length * 7) + (T.attempts[i] > 1 ? 26 : 0), height: 30 });
      }
      T.deps.forEach((ds, i) => ds.forEach((d) => g.setEdge("t" + d, "t" + i)));
      note.textContent = `${N} tasks, coloured by final state; drag to pan, wheel to zoom`;
    }
    dagre.layout(g);
    const gg = g.graph();
    const root = svg("svg", { role: "img", "aria-label": "task graph" });
    const defs = svg("defs");
    root.append(defs);
    const world = svg("g", { class: "world" });
    root.append(world);
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    world.append(edgeLayer, nodeLayer);
    const nodeOf = new Map();
    const edgesOf = new Map();
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      let d = `M${pts[0].x},${pts[0].y}`;
      for (let k = 1; k < pts.length - 1; k++) {
        const mid = { x: (pts[k].x + pts[k + 1].x) / 2, y: (pts[k].y + pts[k + 1].y) / 2 };
        d += k === pts.length - 2 ? ` Q${pts[k].x},${pts[k].y} ${pts[k + 1].x},${pts[k + 1].y}` : ` Q${pts[k].x},${pts[k].y} ${mid.x},${mid.y}`;
      }
      if (pts.length === 2) d += ` L${pts[1].x},${pts[1].y}`;
      const last = pts[pts.length - 1], prev = pts[pts.length - 2];
      const ang = Math.atan2(last.y - prev.y, last.x - prev.x);
      const ax = (a, r) => `${last.x - r * Math.cos(ang + a)},${last.y - r * Math.sin(ang + a)}`;
      const ge = svg("g", { class: "edge" });
      const target = nodes.find((n) => n.id === e.w);
      if (!groups && T.state[target.members[0]] === STATES.indexOf("skipped")) ge.classList.add("skip");
      ge.append(svg("path", { d }), svg("polygon", { points: `${last.x},${last.y} ${ax(0.45, 8)} ${ax(-0.45, 8)}` }));
      edgeLayer.append(ge);
      for (const id of [e.v, e.w]) {
        if (!edgesOf.has(id)) edgesOf.set(id, []);
        edgesOf.get(id).push(ge);
      }
    }
    for (const n of nodes) {
      const p = g.node(n.id);
      const x = p.x - p.width / 2, y = p.y - p.height / 2;
      const gn = svg("g", { class: "node", transform: `translate(${x},${y})`, "data-node": n.id });
      // a group stands for its most telling task: the first failed one, else the first
      const bad = new Set(["failed", "dead_lettered", "cancelled"].map((x) => STATES.indexOf(x)));
      const first = n.members.find((i) => bad.has(T.state[i])) ?? n.members[0];
      if (!groups) gn.setAttribute("data-task", T.name[first]);
      const title = svg("title");
      let fill = "#fff", stroke = "#99a";
      if (n.members.length === 1) {
        const st = STATES[T.state[first]];
        stroke = stateColor(st);
        fill = `color-mix(in srgb, ${stroke} 16%, white)`;
        title.textContent = `${T.name[first]}: ${st}` + (T.attempts[first] > 1 ? `, ${T.attempts[first]} attempts` : "");
      }
      gn.append(title);
      gn.append(svg("rect", { class: "halo", x: -4, y: -4, width: p.width + 8, height: p.height + 8, rx: 9 }));
      const box = svg("rect", { class: "box", width: p.width, height: p.height, fill, stroke, rx: 6 });
      box.style.stroke = stroke;
      gn.append(box);
      const label = svg("text", { x: 10, y: n.members.length > 1 ? 15 : p.height / 2 + 4 });
      label.textContent = n.label.length > 34 ? n.label.slice(0, 33) + "…" : n.label;
      gn.append(label);
      if (n.members.length > 1) {
        // the group's states as one stacked bar
        const counts = {};
        n.members.forEach((i) => (counts[T.state[i]] = (counts[T.state[i]] || 0) + 1));
        let off = 8;
        const w = p.width - 16;
        const parts = [];
        Object.keys(counts).sort((a, b) => a - b).forEach((s) => {
          const bw = (w * counts[s]) / n.members.length;
          gn.append(svg("rect", { x: off, y: 23, width: Math.max(bw, 1), height: 10, fill: stateColor(STATES[s]) }));
          off += bw;
          parts.push(`${counts[s]} ${STATES[s]}`);
        });
        title.textContent = `${n.label}: ${parts.join(", ")}`;
      } else if (T.attempts[first] > 1) {
        const badge = svg("text", { class: "sub", x: p.width - 8, y: p.height / 2 + 4, "text-anchor": "end" });
        badge.textContent = `×${T.attempts[first]}`;
        gn.append(badge);
      }
      gn.addEventListener("click", (ev) => { ev.stopPropagation(); select(first, "graph"); if (n.members.length > 1) showGroup(n); });
      nodeLayer.append(gn);
      nodeOf.set(n.id, gn);
    }
    host.replaceChildren(root);
    // pan and zoom through the viewBox
    const vb = { x: 0, y: 0, w: gg.width, h: gg.height };
    const apply = () => root.setAttribute("viewBox", `${vb.x} ${vb.y} ${vb.w} ${vb.h}`);
    function fit(most) {
      // the first view shrinks a large graph at most 1.6 times, from its start: nodes stay legible, drag to see more
      const r = host.getBoundingClientRect();
      const scale = Math.min(Math.max(gg.width / r.width, gg.height / r.height, 0.8), most);
      vb.w = r.width * scale; vb.h = r.height * scale;
      vb.x = gg.width > vb.w ? 0 : (gg.width - vb.w) / 2; vb.y = (gg.height - vb.h) / 2;
      apply();
    }
    fit(1.6);
    document.getElementById("graph-fit").addEventListener("click", () => fit(Infinity));
    host.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = host.getBoundingClientRect();
      const f = Math.exp(ev.deltaY * 0.0015);
      const px = vb.x + ((ev.clientX - r.left) / r.width) * vb.w, py = vb.y + ((ev.clientY - r.top) / r.height) * vb.h;
      vb.w *= f; vb.h *= f;
      vb.x = px - ((ev.clientX - r.left) / r.width) * vb.w; vb.y = py - ((ev.clientY - r.top) / r.height) * vb.h;
      apply();
    }, { passive: false });
    let drag = null;
    host.addEventListener("pointerdown", (ev) => { if (ev.target.closest(".node")) return; drag = { x: ev.clientX, y: ev.clientY, vx: vb.x, vy: vb.y }; host.classList.add("dragging"); });
    window.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const r = host.getBoundingClientRect();
      vb.x = drag.vx - ((ev.clientX - drag.x) / r.width) * vb.w; vb.y = drag.vy - ((ev.clientY - drag.y) / r.height) * vb.h;
      apply();
    });
    window.addEventListener("pointerup", () => { drag = null; host.classList.remove("dragging"); });
    function centre(id) {
      const p = g.node(id);
      if (p.x < vb.x || p.x > vb.x + vb.w || p.y < vb.y || p.y > vb.y + vb.h) {
        vb.x = p.x - vb.w / 2; vb.y = p.y - vb.h / 2; apply();
      }
    }
    let lit = [];
    listeners.push((i, from) => {
      lit.forEach((e) => e.classList.remove("sel"));
      lit = [];
      if (i < 0) return;
      const id = groups ? "g" + groups.of[i] : "t" + i;
      const gn = nodeOf.get(id);
      gn.classList.add("sel");
      lit.push(gn);
      for (const ge of edgesOf.get(id) || []) { ge.classList.add("sel"); lit.push(ge); }
      if (from !== "graph") centre(id);
    });
    if (selected >= 0) select(selected, "init");
  }

  // ---- details ----------------------------------------------------------------------------------
  function taskButton(i) {
    return el("button", { class: "linkish", type: "button", text: T.name[i], onclick: () => select(i, "details") });
  }
  function metaFor(name) {
    const out = [];
    const br = D.meta.branches;
    if (br && Object.prototype.hasOwnProperty.call(br, name)) out.push(["branch chosen", JSON.stringify(br[name])]);
    const loop = D.meta["loop:" + name];
    if (loop) out.push(["loop checkpoint", `iteration ${loop.iteration}${loop.done ? " (done)" : ""}`]);
    return out;
  }
  function details(i) {
    const body = document.getElementById("detail-body");
    if (i < 0) return;
    const name = T.name[i];
    const st = STATES[T.state[i]];
    const dl = el("dl");
    const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", null, v));
    row("state", stateTag(st));
    row("attempts", String(T.attempts[i]));
    row("duration", ms(T.duration[i]));
    const sp = T.spans[i];
    if (sp.length) row("first start", "+" + ms(sp[0]));
    if (T.skipped[i] != null) row("skipped at", "+" + ms(T.skipped[i]));
    if (T.trace[i]) row("trace id", traceLink(T.trace[i]) ? el("span", null, el("code", { text: T.trace[i].slice(0, 16) + "… " }), traceLink(T.trace[i])) : el("code", { text: T.trace[i] }));
    for (const [k, v] of metaFor(name)) row(k, v);
    const kids = [el("h3", { text: name }), dl];
    if (T.error[i]) kids.push(el("div", { class: "note", text: "error" }), el("pre", { text: T.error[i] }));
    if (sp.length) {
      const ul = el("ul");
      for (let k = 0; k < sp.length; k += 3) ul.append(el("li", { text: `${KIND_LABEL[KINDS[sp[k + 2]]]}: +${ms(sp[k])}, ${ms(sp[k + 1] - sp[k])}` }));
      kids.push(el("div", { class: "note", text: "timeline" }), ul);
    }
    const list = (title, idx) => {
      if (!idx.length) return;
      const ul = el("ul");
      idx.slice(0, 50).forEach((j) => ul.append(el("li", null, taskButton(j), " ", el("span", { class: "note", text: STATES[T.state[j]] }))));
      if (idx.length > 50) ul.append(el("li", { class: "note", text: `and ${idx.length - 50} more` }));
      kids.push(el("div", { class: "note", text: title }), ul);
    };
    list("depends on", T.deps[i]);
    list("needed by", children[i]);
    body.replaceChildren(...kids);
  }
  function showGroup(n) {
    document.getElementById("task-filter").value = "";
    document.getElementById("state-filter").value = "";
    tableApi.only(new Set(n.members), `group ${n.label}`);
  }

  // ---- timeline ---------------------------------------------------------------------------------
  let tableApi = null;
  function timeline() {
    const box = document.getElementById("timeline");
    const inner = document.getElementById("tl-inner");
    const legend = document.getElementById("timeline-legend");
    const used = new Set();
    T.spans.forEach((sp) => { for (let k = 2; k < sp.length; k += 3) used.add(sp[k]); });
    KINDS.forEach((k, ki) => { if (used.has(ki)) legend.append(el("span", null, el("i", { class: "bar-key", style: `background:var(--k-${k})` }), KIND_LABEL[k])); });
    const events = Object.keys(D.meta).filter((k) => k.startsWith("event:") && D.meta[k] && D.meta[k].at != null);
    const breakers = Object.keys(D.meta).filter((k) => k.startsWith("breaker:") && D.meta[k] && D.meta[k].state === "open");
    if (events.length) legend.append(el("span", null, el("i", { style: "border-left:2px dashed #7d5ba6;width:2px" }), "event emitted"));
    if (breakers.length) legend.append(el("span", null, el("i", { style: "border-left:2px dashed var(--failed);width:2px" }), "breaker opened (last)"));
    // rows: tasks that ran, by first start; then the others in task order
    const order = [...Array(N).keys()];
    const first = (i) => (T.spans[i].length ? T.spans[i][0] : T.skipped[i] != null ? T.skipped[i] : Infinity);
    order.sort((a, b) => first(a) - first(b) || a - b);
    const rowOf = new Int32Array(N);
    order.forEach((i, r) => (rowOf[i] = r));
    let end = D.run.duration_ms || 0;
    T.spans.forEach((sp) => { for (let k = 1; k < sp.length; k += 3) end = Math.max(end, sp[k]); });
    end = Math.max(end, 1) * 1.04; // room for a marker at the very end
    const labelW = Math.min(260, Math.max(120, 14 + 7 * Math.max(...T.name.slice(0, 2000).map((n) => n.length), 4)));
    box.style.setProperty("--label-w", labelW + "px");
    let zoom = 1;
    let plotW = 0;
    const axis = el("div", { class: "tl-axis" });
    const body = el("div", { class: "tl-body" });
    const marks = el("div", { class: "tl-marks" });
    inner.replaceChildren(axis, marks, body);
    const x = (t) => labelW + 8 + (t / end) * plotW;
    function layout() {
      plotW = Math.max(200, (box.clientWidth - labelW - 24) * zoom);
      inner.style.width = labelW + plotW + 24 + "px";
      inner.style.height = 24 + order.length * ROW + "px";
      box.style.height = Math.min(380, 24 + order.length * ROW + 18) + "px";
      axis.replaceChildren(el("div", { class: "corner", text: D.kind === "run" ? "since start" : "not run yet" }));
      axis.style.width = inner.style.width;
      const step = niceStep(end / Math.max(2, plotW / 110));
      for (let t = 0; t <= end + 1e-9; t += step) axis.append(el("div", { class: "tick", style: `left:${x(t)}px`, text: ms(t) }));
      marks.replaceChildren();
      const h = order.length * ROW + 24;
      for (const k of events) {
        const at = (D.meta[k].at - D.run.started_at) * 1000;
        marks.append(el("div", { class: "marker" + (at > end * 0.7 ? " left" : ""), style: `left:${x(at)}px;height:${h}px`, title: `${k} at +${ms(at)}` }, el("span", { text: k })));
      }
      for (const k of breakers) {
        const at = (D.meta[k].opened_at - D.run.started_at) * 1000;
        if (at >= 0 && at <= end) marks.append(el("div", { class: "marker breaker" + (at > end * 0.7 ? " left" : ""), style: `left:${x(at)}px;height:${h}px`, title: `${k} opened at +${ms(at)}` }, el("span", { text: k + " open" })));
      }
      drawn = [-1, -1];
      draw();
    }
    let drawn = [-1, -1];
    const rows = new Map();
    function rowEl(i, r) {
      const row = el("div", { class: "tl-row" + (i === selected ? " sel" : ""), style: `top:${24 + r * ROW}px;width:${inner.style.width}`, "data-task": T.name[i] });
      row.append(el("span", { class: "tl-label", text: T.name[i], title: T.name[i] }));
      const sp = T.spans[i];
      for (let k = 0; k < sp.length; k += 3) {
        const kind = KINDS[sp[k + 2]];
        const b = el("div", { class: `bar k-${kind}`, style: `left:${x(sp[k])}px;width:${Math.max(2, x(sp[k + 1]) - x(sp[k]))}px;background-color:var(--k-${kind})`, "data-kind": kind });
        b.title = `${T.name[i]}: ${KIND_LABEL[kind]}, +${ms(sp[k])} for ${ms(sp[k + 1] - sp[k])}`;
        row.append(b);
      }
      if (T.skipped[i] != null) {
        const late = T.skipped[i] > end * 0.85; // near the right edge: the label goes before the moment
        row.append(el("span", { class: "skipmark", style: `left:${x(T.skipped[i]) + 4}px` + (late ? ";transform:translateX(calc(-100% - 8px))" : ""), text: "skipped" }));
      }
      else if (!sp.length && D.kind === "run") row.append(el("span", { class: "skipmark", style: `left:${labelW + 12}px`, text: STATES[T.state[i]] }));
      row.addEventListener("click", () => select(i, "timeline"));
      return row;
    }
    function draw() {
      const top = Math.max(0, Math.floor((box.scrollTop - 24) / ROW) - 10);
      const bottom = Math.min(order.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + 10);
      if (top === drawn[0] && bottom === drawn[1]) return;
      drawn = [top, bottom];
      rows.clear();
      const frag = document.createDocumentFragment();
      for (let r = top; r < bottom; r++) {
        const row = rowEl(order[r], r);
        rows.set(order[r], row);
        frag.append(row);
      }
      body.replaceChildren(frag);
    }
    let pending = false;
    box.addEventListener("scroll", () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } });
    const zoomBy = (f) => {
      const centreT = ((box.scrollLeft + box.clientWidth / 2 - labelW - 8) / plotW) * end;
      zoom = Math.min(400, Math.max(1, zoom * f));
      layout();
      box.scrollLeft = x(centreT) - box.clientWidth / 2;
    };
    document.getElementById("zoom-in").addEventListener("click", () => zoomBy(2));
    document.getElementById("zoom-out").addEventListener("click", () => zoomBy(0.5));
    window.addEventListener("resize", layout);
    listeners.push((i, from) => {
      for (const r of body.querySelectorAll(".tl-row.sel")) r.classList.remove("sel");
      if (i < 0) return;
      const r = rowOf[i];
      const y = 24 + r * ROW;
      if (from !== "timeline" && (y < box.scrollTop + 24 || y + ROW > box.scrollTop + box.clientHeight)) {
        box.scrollTop = Math.max(0, y - box.clientHeight / 2);
        draw();
      }
      const row = rows.get(i);
      if (row) row.classList.add("sel");
      const sp = T.spans[i];
      if (from !== "timeline" && sp.length && (x(sp[0]) < box.scrollLeft + labelW || x(sp[0]) > box.scrollLeft + box.clientWidth)) box.scrollLeft = x(sp[0]) - labelW - 40;
    });
    layout();
  }
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-6))));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  // ---- table ------------------------------------------------------------------------------------
  function table() {
    const box = document.getElementById("table");
    const inner = document.getElementById("table-inner");
    const head = document.getElementById("table-head");
    const filter = document.getElementById("task-filter");
    const stateFilter = document.getElementById("state-filter");
    const count = document.getElementById("task-count");
    const cols = [
      ["task", (i) => T.name[i]], ["state", (i) => T.state[i]], ["attempts", (i) => T.attempts[i]],
      ["duration", (i) => (T.duration[i] == null ? -1 : T.duration[i])], ["error", (i) => T.error[i] || ""], ["trace", (i) => T.trace[i] || ""],
    ];
    let sortCol = -1, asc = true, only = null, onlyLabel = "";
    let rows = [...Array(N).keys()];
    cols.forEach(([name], c) => {
      const h = el("div", { text: name, title: `sort by ${name}` });
      h.addEventListener("click", () => { asc = sortCol === c ? !asc : c !== 3 && c !== 2; sortCol = c; refresh(); });
      head.append(h);
    });
    function refresh() {
      const q = filter.value.trim().toLowerCase();
      const s = stateFilter.value === "" ? -1 : Number(stateFilter.value);
      rows = [];
      for (let i = 0; i < N; i++) {
        if (only && !only.has(i)) continue;
        if (s >= 0 && T.state[i] !== s) continue;
        if (q && !T.name[i].toLowerCase().includes(q) && !(T.error[i] || "").toLowerCase().includes(q)) continue;
        rows.push(i);
      }
      if (sortCol >= 0) {
        const key = cols[sortCol][1];
        rows.sort((a, b) => { const ka = key(a), kb = key(b); return (ka < kb ? -1 : ka > kb ? 1 : a - b) * (asc ? 1 : -1); });
      }
      [...head.children].forEach((h, c) => { h.classList.toggle("sorted", c === sortCol); h.classList.toggle("asc", c === sortCol && asc); });
      inner.style.height = rows.length * ROW + "px";
      box.style.height = Math.min(300, Math.max(3, rows.length) * ROW + 4) + "px";
      count.replaceChildren(`${rows.length} of ${N}` + (only ? ` in ${onlyLabel} ` : ""));
      if (only) count.append(el("button", { type: "button", text: "show all", onclick: () => { only = null; refresh(); } }));
      drawn = [-1, -1];
      draw();
    }
    let drawn = [-1, -1];
    const shown = new Map();
    function draw() {
      const top = Math.max(0, Math.floor(box.scrollTop / ROW) - 10);
      const bottom = Math.min(rows.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + 10);
      if (top === drawn[0] && bottom === drawn[1]) return;
      drawn = [top, bottom];
      shown.clear();
      const frag = document.createDocumentFragment();
      for (let r = top; r < bottom; r++) {
        const i = rows[r];
        const tr = el("div", { class: "tr" + (i === selected ? " sel" : ""), style: `top:${r * ROW}px`, "data-task": T.name[i] },
          el("div", { text: T.name[i], title: T.name[i] }), el("div", null, stateTag(STATES[T.state[i]])),
          el("div", { text: String(T.attempts[i]) }), el("div", { text: ms(T.duration[i]) }),
          el("div", { class: "err", text: short(T.error[i], 200), title: T.error[i] || "" }), el("div", null, traceLink(T.trace[i])));
        tr.addEventListener("click", (ev) => { if (!ev.target.closest("a")) select(i, "table"); });
        shown.set(i, tr);
        frag.append(tr);
      }
      inner.replaceChildren(frag);
    }
    let pending = false;
    box.addEventListener("scroll", () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } });
    filter.addEventListener("input", refresh);
    stateFilter.addEventListener("change", () => {
      refresh();
      for (const chip of document.querySelectorAll("#counts .chip")) chip.classList.toggle("on", chip.textContent.endsWith(STATES[Number(stateFilter.value)]?.replace("_", " ") ?? "\u0000"));
    });
    listeners.push((i, from) => {
      for (const r of inner.querySelectorAll(".tr.sel")) r.classList.remove("sel");
      if (i < 0) return;
      let r = rows.indexOf(i);
      if (r < 0 && from !== "table") { only = null; filter.value = ""; stateFilter.value = ""; refresh(); r = rows.indexOf(i); }
      const y = r * ROW;
      if (from !== "table" && (y < box.scrollTop || y + ROW > box.scrollTop + box.clientHeight)) { box.scrollTop = Math.max(0, y - box.clientHeight / 2); draw(); }
      const tr = shown.get(i);
      if (tr) tr.classList.add("sel");
    });
    refresh();
    return { only: (set, label) => { only = set; onlyLabel = label; box.scrollTop = 0; refresh(); } };
  }

  // ---- dead letters -----------------------------------------------------------------------------
  function deadLetters() {
    const box = document.getElementById("dead-letters");
    const list = D.dead_letters;
    document.getElementById("dead-count").textContent = D.kind === "run" ? `${list.length}` : "none before a run";
    if (!list.length) { box.append(el("p", { class: "note", text: D.kind === "run" ? "No task of this run was dead-lettered." : "" })); return; }
    const byTask = new Map();
    for (const e of list.slice(0, 500)) {
      const i = index.get(e.task);
      const card = el("div", { class: "dl", "data-task": e.task },
        el("div", null, el("span", { class: "t", text: e.task }), el("span", { class: "note", text: `  ${e.attempts} attempt(s) · +${ms(e.at)} · id ${e.id} ` }), traceLink(e.trace)),
        el("div", { class: "m", text: `${e.error_type.split(".").pop()}: ${short(e.message, 300)}` }),
        el("details", null, el("summary", { class: "note", text: "traceback" }), el("pre", { text: e.traceback })));
      if (i != null) card.addEventListener("click", (ev) => { if (ev.target.closest("details,a")) return; select(i, "dead"); });
      if (i != null) byTask.set(i, card);
      box.append(card);
    }
    if (list.length > 500) box.append(el("p", { class: "note", text: `and ${list.length - 500} more: dagexec dlq list --run ${D.run.run_id}` }));
    listeners.push((i, from) => {
      for (const c of box.querySelectorAll(".dl.sel")) c.classList.remove("sel");
      const c = byTask.get(i);
      if (c) { c.classList.add("sel"); if (from !== "dead") c.scrollIntoView({ block: "nearest" }); }
    });
  }

  // ---- parameters and meta ----------------------------------------------------------------------
  function meta() {
    const box = document.getElementById("meta");
    const section = (title, entries, empty) => {
      box.append(el("h3", { text: title }));
      if (!entries.length) { box.append(el("p", { class: "note", text: empty })); return; }
      const t = el("table");
      for (const [k, v, i] of entries.slice(0, 300)) {
        const key = i != null ? taskButton(i) : el("span", { text: k });
        t.append(el("tr", null, el("td", null, key), el("td", null, el("code", { text: typeof v === "string" ? v : JSON.stringify(v) }))));
      }
      if (entries.length > 300) t.append(el("tr", null, el("td", { text: `and ${entries.length - 300} more` })));
      box.append(t);
    };
    const p = D.params;
    section("Parameters", p && typeof p === "object" ? Object.entries(p) : [], D.kind === "run" ? "This run was given no parameters." : "Given when the DAG runs.");
    const m = D.meta || {};
    const br = m.branches || {};
    section("Branch choices", Object.entries(br).map(([k, v]) => [k, v == null ? "no branch" : v, index.get(k)]), "No conditional task chose a branch.");
    const loops = Object.keys(m).filter((k) => k.startsWith("loop:"));
    section("Loop checkpoints", loops.map((k) => [k.slice(5), `iteration ${m[k].iteration}${m[k].done ? ", done" : ""}; result ${JSON.stringify(m[k].result)}`, index.get(k.slice(5))]), "No loop checkpointed.");
    const ev = Object.keys(m).filter((k) => k.startsWith("event:"));
    section("Events", ev.map((k) => [k.slice(6), `+${ms((m[k].at - D.run.started_at) * 1000)}; payload ${JSON.stringify(m[k].payload)}`]), "No event was emitted.");
    const brk = Object.keys(m).filter((k) => k.startsWith("breaker:"));
    section("Circuit breakers (last state)", brk.map((k) => {
      const b = m[k] || {};
      const since = b.state === "open" && b.opened_at != null ? `, opened at +${ms((b.opened_at - D.run.started_at) * 1000)}` : "";
      return [k.slice(8), `${b.state}; ${b.failures || 0} consecutive failure(s)${since}`];
    }), "No circuit breaker changed state.");
    const rest = Object.keys(m).filter((k) => k !== "branches" && !k.startsWith("loop:") && !k.startsWith("event:") && !k.startsWith("breaker:"));
    const runMeta = Object.entries((D.run && D.run.meta) || {});
    section("Run meta", [...runMeta, ...rest.map((k) => [k, m[k]])], "None.");
  }

  // ---- start ------------------------------------------------------------------------------------
  header();
  tableApi = table();
  if (D.kind === "run") {
    timeline();
    deadLetters();
    meta();
  } else {  // a DAG before any run: its graph and its task list
    for (const id of ["timeline-panel", "dead-panel", "meta-panel"]) document.getElementById(id).remove();
  }
  listeners.push((i) => details(i));
  listeners.push((i) => {
    try { if (i >= 0) history.replaceState(null, "", "#task=" + encodeURIComponent(T.name[i])); } catch (e) { /* a sandboxed frame */ }
  });
  const wanted = decodeURIComponent((location.hash.match(/^#task=(.*)$/) || [])[1] || "");
  // the graph is laid out after the rest has painted: its layout is the slow part
  requestAnimationFrame(() => setTimeout(() => {
    try { graph(); } finally {
      if (index.has(wanted)) select(index.get(wanted), "init");
      performance.mark("dagexec-report-ready");
      document.body.dataset.ready = "1";
    }
  }, 0));
})();

// The Tamga console: plain JavaScript, no build step. Every figure comes from the console's
// read proxy (/api/...), which signs the node reads with the user's key in the console
// process; this page never sees the key. A value the node does not report shows as "—".
"use strict";

const DASH = "—";

// A node's equivocation evidence as its status reports it ({pieces, against, refused}):
// "none", or how many pieces and against which member states.
function evidenceText(e) {
  if (e === null || e === undefined) return DASH;
  if (typeof e !== "object" || !("pieces" in e)) return JSON.stringify(e);
  if (!e.pieces) return "none";
  const against = Array.isArray(e.against) && e.against.length ? ` against ${e.against.join(", ")}` : "";
  return `${e.pieces} piece${e.pieces === 1 ? "" : "s"}${against}`;
}
const NETWORK_POLL_MS = 2000;
const DAY_MS = 86400000;
const CHARTS = document.body.dataset.charts === "on" && typeof window.Chart === "function";
const PALETTE = ["#0b5cad", "#c4432b", "#2f8f46", "#8a4fbf", "#b3830f", "#1f8a99", "#6e7781", "#d35d95"];

let session = null;
let current = null;
let pollTimer = null;
const charts = new Map();

// -- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(value) {
  if (value === null || value === undefined || value === "") return DASH;
  if (Array.isArray(value)) return value.length ? value.join(", ") : DASH;
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

function when(ms) {
  if (typeof ms !== "number") return DASH;
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function day(ms) { return new Date(ms - (ms % DAY_MS)).toISOString().slice(0, 10); }

function short(hex) { return typeof hex === "string" && hex.length > 16 ? hex.slice(0, 12) + "…" : show(hex); }

function mono(text, title) { return el("code", { title: title || null }, show(text)); }

function age(ms, now) {
  if (typeof ms !== "number") return DASH;
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function codeLink(code) {
  return el("a", { href: "#code/" + encodeURIComponent(code) }, mono(code));
}

// A table with a caption and column headers; each row is a list of cells (text or nodes).
function table(caption, columns, rows, opts = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label || c)));
  const body = rows.map((row) => el("tr", {}, row.map((cell, i) => {
    const isNum = columns[i] && columns[i].num;
    return el(i === 0 && opts.rowHeaders ? "th" : "td", { scope: i === 0 && opts.rowHeaders ? "row" : null,
      class: isNum ? "num" : null }, cell instanceof Node ? cell : show(cell));
  })));
  if (!rows.length) {
    body.push(el("tr", {}, el("td", { colspan: columns.length }, opts.empty || "None.")));
  }
  return el("table", { "data-table": opts.id || null }, el("caption", {}, caption), el("thead", {}, head),
    el("tbody", {}, body));
}

function refusal(error) {
  if (!error) return "";
  const words = error.code === "not_entitled" ? "your key is not entitled to read this"
    : error.code === "unsigned" ? "reading this needs a participant's key (start the console with --key)"
    : error.code === "not_registered" ? "your key is not a registered participant"
    : error.code === "not_found" || error.status === 404 ? "this node does not offer it"
    : error.code === "unreachable" ? "the node did not answer"
    : error.message || error.code;
  return `${words} (${error.code || "error"}${error.status ? ", HTTP " + error.status : ""})`;
}

function refusedNote(what, error) {
  return el("p", { class: "refused", "data-refused": error.code || "error" }, `${what}: ${refusal(error)}.`);
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!body.ok) return { ok: false, error: body.error || { code: "error", message: "failed" } };
  return { ok: true, data: body.data };
}

function chartBox(id, label) {
  if (!CHARTS) return null;
  const canvas = el("canvas", { id, role: "img", "aria-label": label });
  return el("div", { class: "chart" }, canvas);
}

function drawChart(id, config) {
  if (!CHARTS) return;
  const canvas = document.getElementById(id);
  if (!canvas) return;
  if (charts.has(id)) charts.get(id).destroy();
  config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
  charts.set(id, new window.Chart(canvas, config));
}

function section(view) { return document.getElementById("view-" + view); }

function setStatus(view, text, bad = false) {
  const status = section(view).querySelector(".status");
  status.textContent = text;
  status.classList.toggle("refused", bad);
}

function fill(view, ...nodes) {
  const content = section(view).querySelector(".content");
  content.replaceChildren(...nodes.flat().filter((n) => n));
  content.dataset.loaded = "true";
}

function participantName(id, index) {
  if (!id) return DASH;
  const p = index && index.get(id);
  return p ? `${p.name} (${p.state})` : short(id);
}

// -- Network ---------------------------------------------------------------------------

async function network() {
  const answer = await api("/api/network");
  if (current !== "network") return;
  if (!answer.ok) { setStatus("network", refusal(answer.error), true); return; }
  const { nodes, quorum, time_ms: now } = answer.data;
  const top = Math.max(0, ...nodes.map((n) => n.height || 0));
  const rows = nodes.map((n) => [
    el("span", {}, n.state),
    n.reachable ? show(n.role) : el("span", { class: "bad" }, "unreachable"),
    show(n.height),
    show(n.final_height),
    show(n.leader_state),
    show(n.term),
    n.reachable ? String(top - (n.height || 0)) : DASH,
    peerText(n.peers),
    show(n.head_attested_by),
    alarmText(n.alarms),
    evidenceText(n.evidence),
    n.error ? el("span", { class: "bad" }, n.error) : DASH,
  ]);
  const cols = ["State", "Role", { label: "Height", num: true }, { label: "Final height", num: true }, "Leader",
    { label: "Term", num: true }, { label: "Blocks behind", num: true }, "Peers (height, last heard)",
    "Head attested by", "Alarms", "Evidence", "Error"];
  fill("network",
    table("Member states' nodes", cols, rows, { id: "network", rowHeaders: true }),
    el("p", {}, quorum ? `A block is final once ${quorum} of ${nodes.length} member states attest it.` : ""));
  setStatus("network", `Updated ${when(now)}.`);
}

function peerText(peers) {
  const parts = Object.entries(peers || {}).map(([state, p]) =>
    `${state}: ${show(p.height)}, ${p.seen_ms_ago === null || p.seen_ms_ago === undefined ? DASH : p.seen_ms_ago + " ms"}`);
  return parts.length ? parts.join("; ") : DASH;
}

function alarmText(alarms) {
  const kinds = Object.keys(alarms || {});
  return kinds.length ? el("span", { class: "bad" }, kinds.join(", ")) : "none";
}

function pollNetwork() {
  clearTimeout(pollTimer);
  if (current !== "network") return;
  network().catch(reportError("network")).finally(() => {
    if (current === "network") pollTimer = setTimeout(pollNetwork, NETWORK_POLL_MS);
  });
}

// -- Flows -----------------------------------------------------------------------------

let flowsData = null;

async function flows() {
  setStatus("flows", "Loading shipments…");
  const answer = await api("/api/flows");
  if (!answer.ok) { fill("flows"); setStatus("flows", refusal(answer.error), true); return; }
  flowsData = answer.data;
  const { states, pairs, time_ms: now } = flowsData;
  const byPair = new Map(pairs.map((p) => [`${p.from_state}>${p.to_state}`, p]));
  const rows = states.map((from) => [from, ...states.map((to) => {
    if (from === to) return DASH;
    const p = byPair.get(`${from}>${to}`);
    if (!p) return DASH;
    if (p.error) return el("span", { class: "refused", title: refusal(p.error) }, "not readable");
    const n = p.shipments.length + (p.more ? "+" : "");
    return el("button", { type: "button", class: "cell", "data-pair": `${from}-${to}`,
      "aria-label": `${n} shipments from ${from} to ${to}; list them`,
      on: { click: () => drill(from, to) } }, String(n));
  })]);
  const matrix = table("Cross-border shipments (rows: from; columns: to)", ["From \\ to", ...states], rows,
    { id: "flows-matrix", rowHeaders: true });
  const all = pairs.flatMap((p) => (p.shipments || []).map((s) => ({ ...s, pair: `${p.from_state}→${p.to_state}` })));
  const days = [...new Set(all.filter((s) => s.time_ms).map((s) => day(s.time_ms)))].sort();
  const pairNames = [...new Set(all.map((s) => s.pair))].sort();
  const dayRows = days.map((d) => [d, ...pairNames.map((pn) => all.filter((s) => s.pair === pn && day(s.time_ms) === d).length)]);
  const products = productRows(all);
  const pending = all.filter((s) => s.status === "pending").sort((a, b) => (a.time_ms || 0) - (b.time_ms || 0));
  fill("flows",
    matrix,
    el("div", { id: "flows-drill" }),
    el("h3", {}, "Shipments by day"),
    chartBox("flows-chart", "Cross-border shipments per day by state pair"),
    table("Shipments per day and state pair", ["Day", ...pairNames.map((p) => ({ label: p, num: true }))], dayRows,
      { id: "flows-by-day", empty: "No cross-border shipments." }),
    el("h3", {}, "By product"),
    table("Items shipped across borders by state pair and product (GTIN)", ["Pair", "Product",
      { label: "Items", num: true }], products, { id: "flows-by-product", empty: "No cross-border shipments." }),
    el("h3", {}, "Pending cross-border shipments by age"),
    table("Shipped but not yet accepted, oldest first", ["Age", "Pair", "Shipment", "Shipper", "Receiver",
      { label: "Items", num: true }],
    pending.map((s) => [age(s.time_ms, now), s.pair, mono(short(s.id), s.id), mono(short(s.shipper), s.shipper),
      mono(short(s.receiver), s.receiver), String((s.items || []).length)]),
    { id: "flows-pending", empty: "None pending." }));
  drawChart("flows-chart", {
    type: "bar",
    data: { labels: days, datasets: pairNames.map((pn, i) => ({ label: pn, backgroundColor: PALETTE[i % PALETTE.length],
      data: days.map((d) => all.filter((s) => s.pair === pn && day(s.time_ms) === d).length) })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
  });
  setStatus("flows", `${all.length} cross-border shipments; read ${when(now)}.`);
}

// A unit code's key is "01" GTIN "21" serial; an aggregate (SSCC) names no product.
function product(code) { return code.startsWith("01") ? "GTIN " + code.slice(2, 16) : "aggregates (SSCC)"; }

function productRows(shipments) {
  const counts = new Map();
  for (const s of shipments) {
    for (const code of s.items || []) {
      const key = `${s.pair}\t${product(code)}`;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
  }
  return [...counts.entries()].sort().map(([key, n]) => [...key.split("\t"), String(n)]);
}

function drill(from, to) {
  const p = flowsData.pairs.find((x) => x.from_state === from && x.to_state === to);
  const box = document.getElementById("flows-drill");
  const rows = (p.shipments || []).map((s) => [String(s.height), when(s.time_ms), mono(short(s.id), s.id),
    mono(short(s.shipper), s.shipper), mono(short(s.receiver), s.receiver),
    el("span", {}, (s.items || []).map((c, i) => [i ? ", " : "", codeLink(c)])), show(s.status)]);
  box.replaceChildren(el("h3", {}, `Shipments from ${from} to ${to}`),
    table(`${rows.length} shipments from ${from} to ${to}`, [{ label: "Block", num: true }, "Time", "Shipment",
      "Shipper", "Receiver", "Items", "Status"], rows, { id: "flows-shipments" }));
  box.querySelector("caption").setAttribute("tabindex", "-1");
  box.querySelector("caption").focus();
}

// -- Code ------------------------------------------------------------------------------

async function codeView(code) {
  const input = document.getElementById("code-input");
  if (!code) { fill("code", el("p", {}, "Enter a code to see its provenance.")); setStatus("code", ""); return; }
  input.value = code;
  setStatus("code", "Reading the code's history…");
  const answer = await api("/api/code?code=" + encodeURIComponent(code));
  if (!answer.ok) { fill("code"); setStatus("code", refusal(answer.error), true); return; }
  const { check, code: state, timeline, errors } = answer.data;
  const parts = [];
  if (check) {
    parts.push(el("h3", {}, "Public check"), el("dl", { class: "facts", "data-facts": "check" },
      el("dt", {}, "Code"), el("dd", {}, mono(check.code)),
      el("dt", {}, check.gtin ? "GTIN" : "SSCC"), el("dd", {}, show(check.gtin || check.sscc)),
      el("dt", {}, "Status"), el("dd", {}, show(check.status)),
      el("dt", {}, "Suspended"), el("dd", { class: check.suspended ? "bad" : null }, show(check.suspended))));
  } else if (errors.check) {
    parts.push(refusedNote("Public check", errors.check));
  }
  if (errors.code) parts.push(refusedNote("Provenance", errors.code));
  if (state) {
    const last = timeline && timeline.length ? timeline[timeline.length - 1].holder : null;
    const owner = last && last.id === state.owner && last.name ? `${last.name} (${show(last.state)})` : null;
    parts.push(el("h3", {}, "Now"), el("dl", { class: "facts", "data-facts": "state" },
      el("dt", {}, "Held by"), el("dd", {}, owner || mono(state.owner)), el("dt", {}, "Holder's state"), el("dd", {}, show(state.owner_state)),
      el("dt", {}, "In aggregate"), el("dd", {}, state.outermost_aggregate ? codeLink(state.outermost_aggregate) : DASH),
      el("dt", {}, "In transit"), el("dd", {}, state.in_transit ? mono(short(state.in_transit), state.in_transit) : "no"),
      el("dt", {}, "Retired as"), el("dd", {}, show(state.retire_reason))));
    const q = encodeURIComponent(check.code);
    parts.push(el("p", { class: "links" },
      el("a", { href: "/download/provenance?code=" + q, download: "", "data-link": "provenance" }, "Provenance bundle (JSON)"),
      el("a", { href: "/download/epcis?code=" + q, download: "", "data-link": "epcis" }, "EPCIS 2.0 export (JSON-LD)")));
  }
  if (timeline) {
    parts.push(el("h3", {}, `Timeline: ${timeline.length} documents`));
    parts.push(el("ol", { class: "timeline", "data-timeline": "" }, timeline.map(timelineItem)));
    if (answer.data.complete === false) parts.push(el("p", { class: "note" }, "The history is longer than shown."));
  }
  fill("code", parts);
  setStatus("code", timeline ? `Final height reported by the node: ${show(answer.data.final_height)}.` : "");
}

function timelineItem(e) {
  const doc = e.document || {};
  const finality = e.final === true ? el("span", { class: "final" }, "final")
    : e.final === false ? el("span", { class: "notfinal" }, "not final yet") : DASH;
  const who = e.signer ? `${show(e.signer.name)} (${show(e.signer.state)})` : DASH;
  const holder = e.holder ? `${show(e.holder.name)} (${show(e.holder.state)})` : DASH;
  const detail = [];
  if (doc.receiver) detail.push(el("span", {}, "to ", mono(short(doc.receiver), doc.receiver)));
  if (doc.reason) detail.push(el("span", {}, "reason ", doc.reason));
  if (e.via) detail.push(el("span", {}, "moved inside ", codeLink(e.via)));
  if (e.sscc && !e.via) detail.push(el("span", {}, "aggregate ", codeLink(e.sscc)));
  return el("li", { "data-type": e.type },
    el("div", { class: "event" }, e.type.replace(/_/g, " ")),
    el("div", {}, `${when(e.time_ms)} · block ${e.height} · `, finality,
      e.attested_by ? ` (attested by ${e.attested_by.join(", ") || DASH})` : ""),
    el("div", {}, `by ${who}; held by ${holder}`),
    detail.length ? el("div", {}, detail.flatMap((d, i) => (i ? ["; ", d] : [d]))) : null,
    el("div", {}, "document ", mono(short(e.document_id), e.document_id)));
}

// -- chain index (participants, suspensions, anomalies) ---------------------------------

async function chainIndex() {
  const answer = await api("/api/chain");
  return answer;
}

function nameIndex(chain) {
  const known = [...((chain && chain.regulators) || []), ...((chain && chain.participants) || [])];
  return new Map(known.filter((p) => p.id && p.name).map((p) => [p.id, p]));
}

async function participants() {
  setStatus("participants", "Reading participants…");
  const chain = await chainIndex();
  const parts = [];
  if (session && session.participant) {
    parts.push(el("h3", {}, "You"), el("div", { id: "own-holdings" }));
  }
  if (chain.ok) {
    const rows = chain.data.participants.map((p) => [p.name, p.state, show(p.roles), mono(short(p.id), p.id),
      String(p.registered_height), el("button", { type: "button", "data-holdings": p.id,
        "aria-label": `Holdings of ${p.name}`, on: { click: () => holdings(p.id, "holdings-box", p.name) } }, "Holdings")]);
    parts.push(el("h3", {}, "Registered participants"),
      table(`${rows.length} participants registered on the chain`, ["Name", "State", "Roles", "Id",
        { label: "Registered at block", num: true }, "Holdings"], rows, { id: "participants" }),
      el("div", { id: "holdings-box" }));
  } else {
    parts.push(refusedNote("The chain's list of participants", chain.error));
  }
  fill("participants", parts);
  if (session && session.participant) await holdings(session.participant, "own-holdings", "you");
  setStatus("participants", chain.ok ? `Read up to block ${chain.data.height}.` : "");
}

async function holdings(pid, boxId, name) {
  const box = document.getElementById(boxId);
  const answer = await api(`/api/participant/${pid}`);
  if (!answer.ok) { box.replaceChildren(refusedNote(`Holdings of ${name}`, answer.error)); return; }
  const { participant: p, holdings: codes, more } = answer.data;
  box.replaceChildren(
    el("dl", { class: "facts" }, el("dt", {}, "Name"), el("dd", {}, show(p.name)), el("dt", {}, "State"),
      el("dd", {}, show(p.state)), el("dt", {}, "Roles"), el("dd", {}, show(p.roles)), el("dt", {}, "Status"),
      el("dd", {}, show(p.status)), el("dt", {}, "Id"), el("dd", {}, mono(p.id))),
    table(`Holdings of ${p.name}: ${codes.length}${more ? "+" : ""} codes and aggregates`, ["Code"],
      codes.map((c) => [codeLink(c)]), { id: "holdings-" + pid, empty: "Holds nothing." }));
}

async function recalls() {
  setStatus("recalls", "Reading suspensions and recalls…");
  const [chain, route] = await Promise.all([chainIndex(), api("/api/node/v1/recalls")]);
  const parts = [el("h3", {}, "Suspended codes")];
  const names = chain.ok ? nameIndex(chain.data) : null;
  if (chain.ok) {
    parts.push(table(`${chain.data.suspended.length} codes suspended now`, ["Code", { label: "Since block", num: true },
      "Since", "Suspended by", "Note"], chain.data.suspended.map((s) => [codeLink(s.code), String(s.height),
      when(s.time_ms), participantName(s.signer, names), show(s.note)]), { id: "suspended", empty: "No code is suspended." }));
  } else {
    parts.push(refusedNote("Suspensions", chain.error));
  }
  parts.push(el("h3", {}, "Recalls"));
  if (route.ok) {
    const items = Array.isArray(route.data) ? route.data : route.data.recalls || [];
    parts.push(table(`${items.length} recalls`, ["Recall"], items.map((r) => [JSON.stringify(r)]), { id: "recalls" }));
  } else if (chain.ok && chain.data.recalls.length) {
    parts.push(table(`${chain.data.recalls.length} recall documents`, [{ label: "Block", num: true }, "Time", "By", "Document"],
      chain.data.recalls.map((r) => [String(r.height), when(r.time_ms), participantName(r.signer, names),
        JSON.stringify(r.document)]), { id: "recalls" }));
  } else {
    parts.push(el("p", { "data-empty": "recalls" }, `No recalls: this chain has no recall documents yet, and ${refusal(route.error)}.`));
  }
  fill("recalls", parts);
  setStatus("recalls", chain.ok ? `Read up to block ${chain.data.height}.` : "");
}

async function anomalies() {
  setStatus("anomalies", "Reading the chain…");
  const [chain, sql, flowAnswer] = await Promise.all([chainIndex(), api("/api/anomalies/sql"), api("/api/flows")]);
  const parts = [];
  if (chain.ok) {
    const c = chain.data;
    const names = nameIndex(c);
    parts.push(el("h3", {}, "Refused documents by reason"),
      chartBox("rejections-chart", "Refused documents by reason"),
      table(`${c.rejections_by_reason.reduce((n, r) => n + r.count, 0)} refused documents`, ["Reason", { label: "Documents", num: true }],
        c.rejections_by_reason.map((r) => [r.key, String(r.count)]), { id: "rejections-by-reason", empty: "No document was refused." }),
      el("h3", {}, "Refused documents by participant"),
      table("Who was refused, most first", ["Participant", { label: "Documents", num: true }],
        c.rejections_by_signer.map((r) => [participantName(r.key, names), String(r.count)]),
        { id: "rejections-by-signer", empty: "No document was refused." }),
      el("h3", {}, "Latest refusals"),
      table("Newest first", [{ label: "Block", num: true }, "Time", "Document", "By", "Reason", "Message"],
        c.recent_rejections.map((r) => [String(r.height), when(r.time_ms), r.type, participantName(r.signer, names),
          r.reason, r.message]), { id: "recent-rejections", empty: "None." }));
  } else {
    parts.push(refusedNote("Refusals on the chain", chain.error));
  }
  parts.push(el("h3", {}, "Cross-border shipments unaccepted for days"));
  if (flowAnswer.ok) {
    const now = flowAnswer.data.time_ms;
    const old = flowAnswer.data.pairs.flatMap((p) => (p.shipments || []).filter((s) => s.status === "pending")
      .map((s) => ({ ...s, pair: `${p.from_state}→${p.to_state}` })));
    const buckets = [["under 1 day", 0, 1], ["1 to 7 days", 1, 7], ["over 7 days", 7, Infinity]].map(([label, lo, hi]) =>
      [label, String(old.filter((s) => typeof s.time_ms === "number" && (now - s.time_ms) / DAY_MS >= lo && (now - s.time_ms) / DAY_MS < hi).length)]);
    parts.push(table("Pending cross-border shipments by age", ["Age", { label: "Shipments", num: true }], buckets, { id: "pending-ages" }));
  } else {
    parts.push(refusedNote("Flows", flowAnswer.error));
  }
  parts.push(el("h3", {}, "SQL anomaly reports"));
  const slot = el("div", { id: "sql-anomalies" });
  if (sql.ok && sql.data.available) {
    for (const r of sql.data.reports) {
      slot.append(el("h4", {}, r.title), el("p", {}, show(r.description)), table(r.title, r.columns, r.rows));
    }
  } else {
    slot.append(el("p", {}, sql.ok ? sql.data.how : refusal(sql.error)));
  }
  parts.push(slot);
  fill("anomalies", parts);
  if (chain.ok) {
    drawChart("rejections-chart", { type: "bar", data: { labels: chain.data.rejections_by_reason.map((r) => r.key),
      datasets: [{ label: "refused documents", backgroundColor: PALETTE[1], data: chain.data.rejections_by_reason.map((r) => r.count) }] },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } } });
  }
  setStatus("anomalies", chain.ok ? `Read up to block ${chain.data.height}.` : "");
}

// -- routing ---------------------------------------------------------------------------

const VIEWS = { network: () => pollNetwork(), flows, code: codeView, participants, recalls, anomalies };

function reportError(view) {
  return (err) => {
    setStatus(view, `Could not show this view: ${err && err.message ? err.message : err}`, true);
    console.error(err);
  };
}

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  const view = VIEWS[name] ? name : "network";
  current = view;
  clearTimeout(pollTimer);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.dataset.view !== view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  section(view).querySelector(".content").dataset.loaded = "false";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : "";
  Promise.resolve(VIEWS[view](arg)).catch(reportError(view));
}

async function start() {
  document.getElementById("charts-off").hidden = document.body.dataset.charts === "on";
  document.getElementById("code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = document.getElementById("code-input").value.trim();
    if (code) location.hash = "#code/" + encodeURIComponent(code);
  });
  const who = document.getElementById("who");
  const answer = await api("/api/session");
  if (answer.ok) {
    session = answer.data;
    const r = session.record;
    const reader = !session.participant ? "without a key: only what anyone may read"
      : r ? `as ${r.name} (${r.state}; ${show(r.roles)})` : `as ${short(session.participant)} (not a registered participant)`;
    who.textContent = `Reading ${reader}, from the node of ${show(session.node_state)} at ${session.node}.`;
    who.dataset.participant = session.participant || "";
  } else {
    who.textContent = `The node did not answer: ${refusal(answer.error)}.`;
  }
  window.addEventListener("hashchange", route);
  route();
}

start().catch((err) => { console.error(err); });

// The release page: polls the controller's own API (relative URLs, so it works behind
// kubectl port-forward and an ingress path prefix) and draws what it reads. No framework,
// no build step: plain DOM and an inline SVG chart.
"use strict";

const STATUS_EVERY_MS = 1000;
const TRAFFIC_EVERY_MS = 2000;
const CHART_WINDOW_S = 120;
const PALETTE = ["#7c3aed", "#ea580c", "#0891b2", "#db2777", "#65a30d", "#ca8a04"];

const state = { config: null, status: null, history: [], lastOpKey: null, busy: false };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function getJson(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

function versionColor(version) {
  const n = parseInt(version, 10);
  return PALETTE[(Number.isNaN(n) ? 0 : n - 1) % PALETTE.length];
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "-";
  return typeof value === "number" ? String(Number(value.toPrecision(digits))) : String(value);
}

// -- colors and controls -------------------------------------------------------------------

// Ids `${role}-card`, `${role}-color`, ...: what showColor and the browser test look up.
function addColorCards() {
  const template = $("color-card");
  for (const role of ["live", "standby"]) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.id = `${role}-card`;
    card.querySelector("h2").textContent = role;
    for (const node of card.querySelectorAll("[data-part]")) node.id = `${role}-${node.dataset.part}`;
    template.before(card);
  }
}

function showColor(role, part, pods) {
  const name = $(`${role}-color`);
  name.textContent = part ? part.color : "-";
  name.className = `color-name color-${part ? part.color : ""}`;
  $(`${role}-version`).textContent = part && part.version ? `v${part.version}` : "none";
  $(`${role}-ready`).textContent = part ? (part.ready ? "ready" : "not ready") : "-";
  $(`${role}-pods`).textContent = part && pods && part.color in pods ? pods[part.color] : "-";
}

function showControls(status) {
  const op = status.operation;
  const running = op && ["running", "baking", "paused"].includes(op.status);
  $("btn-promote").hidden = !(op && op.status === "paused");
  $("btn-abort").hidden = !running;
  // Rollback needs something to return to; during a bake it ends the bake.
  $("btn-rollback").hidden = !(status.standby.version && status.standby.ready) ||
    (running && op.status !== "baking");
  $("token-row").hidden = !(state.config && state.config.token_required);
}

async function act(path, label) {
  if (state.busy) return;
  const headers = { "Content-Type": "application/json" };
  if (state.config && state.config.token_required) {
    const token = $("token").value.trim();
    if (!token) {
      $("message").textContent = `${label} needs the API token: enter it above.`;
      $("token").focus();
      return;
    }
    headers.Authorization = `Bearer ${token}`;
  }
  state.busy = true;
  $("message").textContent = `${label} ...`;
  try {
    const answer = await fetch(path, { method: "POST", headers, body: "{}" });
    const body = await answer.json().catch(() => ({}));
    if (answer.ok) {
      $("message").textContent = `${label}: ${body.status || "done"}` +
        (body.seconds !== undefined && body.seconds !== null ? ` in ${fmt(body.seconds)} s` : "");
    } else {
      $("message").textContent = `${label} refused (${answer.status} ${body.error || ""}): ${body.detail || ""}`;
    }
  } catch (error) {
    $("message").textContent = `${label} failed: ${error.message}`;
  } finally {
    state.busy = false;
    refresh();
  }
}

// -- the operation, its steps and its analysis ---------------------------------------------

function showOperation(op) {
  if (!op) return;
  const target = op.target_version ? ` v${op.target_version}` : "";
  $("op-title").textContent = `${op.kind}${target} · ${op.id}`;
  const status = $("op-status");
  status.textContent = op.status + (op.failed_step ? ` at ${op.failed_step}` : "") +
    (op.seconds !== null && op.seconds !== undefined ? ` · ${fmt(op.seconds)} s` : "");
  status.className = `status ${op.status}`;
  $("op-reason").textContent = op.reason ? `reason: ${op.reason}` : "";
  const steps = $("steps");
  steps.replaceChildren(...(op.steps || []).map((step) => {
    const phase = step.ok === null || step.ok === undefined ? "running" : (step.ok ? "ok" : "failed");
    const took = step.seconds !== null && step.seconds !== undefined ? ` ${fmt(step.seconds)} s` : "";
    return el("li", { class: phase, "data-step": step.name, "data-phase": phase },
      `${step.name} — ${phase}${took}`, step.detail ? el("span", { class: "muted" }, ` · ${step.detail}`) : null);
  }));
  showAnalysis(op.analysis || {});
}

function checksTable(checks) {
  const rows = (checks || []).map((check) => el("tr", { "data-check": check.name },
    el("td", {}, check.name),
    el("td", {}, fmt(check.measured)),
    el("td", {}, fmt(check.threshold)),
    el("td", {}, fmt(check.baseline)),
    el("td", { class: `verdict-${check.verdict}` }, check.verdict),
    el("td", { class: "muted" }, check.detail || "")));
  return el("table", {},
    el("thead", {}, el("tr", {}, ...["check", "measured", "threshold", "baseline", "verdict", "detail"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function showAnalysis(analysis) {
  const parts = [];
  if (analysis.shadow) {
    const shadow = analysis.shadow;
    parts.push(el("h2", {}, `shadow · ${shadow.verdict}`),
      el("div", {}, `${shadow.compared} compared of ${shadow.mirrored} mirrored` +
        (shadow.skipped_by_cap ? ` (${shadow.skipped_by_cap} over the ${fmt(shadow.max_rps)}/s cap)` : "") +
        ` · agreement ${fmt(shadow.agreement)}`),
      checksTable(shadow.checks));
  }
  if (analysis.bake) {
    const bake = analysis.bake;
    const share = bake.seconds_planned ? Math.min(1, bake.seconds / bake.seconds_planned) : 0;
    const live = bake.live || {};
    parts.push(el("h2", {}, `bake · ${bake.verdict}`),
      el("div", { class: "bar", id: "bake-bar" }, el("div", { style: `width:${(share * 100).toFixed(1)}%` })),
      el("div", {}, `${fmt(bake.seconds)} of ${fmt(bake.seconds_planned)} s · ${live.requests || 0} requests judged` +
        (bake.breached_check ? ` · breached ${bake.breached_check}` : "")),
      checksTable(bake.checks));
  }
  $("analysis").replaceChildren(...parts);
}

// -- history -------------------------------------------------------------------------------

function showHistory(history) {
  const rows = history.map((op) => el("tr", { "data-id": op.id, "data-status": op.status },
    el("td", {}, (op.finished_at || op.started_at || "").replace("T", " ").slice(0, 19)),
    el("td", {}, `${op.kind} ${op.id}`),
    el("td", { class: `status ${op.status}` }, op.status + (op.failed_step ? ` at ${op.failed_step}` : "")),
    el("td", {}, `${op.from_version ? "v" + op.from_version : "-"} → ${op.target_version ? "v" + op.target_version : "-"}`),
    el("td", {}, fmt(op.seconds)),
    el("td", {}, op.reason || "")));
  $("history").querySelector("tbody").replaceChildren(...rows);
}

// -- traffic chart -------------------------------------------------------------------------

function svgNode(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function drawChart(svg, series, now, unit) {
  const width = 600, height = 160, pad = 18;
  let top = 0;
  for (const points of Object.values(series)) for (const [, y] of points) top = Math.max(top, y);
  top = top > 0 ? top * 1.15 : 1;
  const nodes = [];
  for (let i = 0; i <= 2; i++) {
    const y = pad + (height - 2 * pad) * (i / 2);
    nodes.push(svgNode("line", { x1: 0, x2: width, y1: y, y2: y, stroke: "#e5e7eb" }));
    const label = svgNode("text", { x: 2, y: y - 2, "font-size": 10, fill: "#6b7280" });
    label.textContent = `${fmt(top * (1 - i / 2), 2)}${unit}`;
    nodes.push(label);
  }
  for (const [version, points] of Object.entries(series)) {
    const coords = points.map(([at, y]) => {
      const x = width * (1 - (now - at) / CHART_WINDOW_S);
      return `${x.toFixed(1)},${(height - pad - (height - 2 * pad) * (y / top)).toFixed(1)}`;
    });
    if (coords.length) {
      nodes.push(svgNode("polyline", {
        points: coords.join(" "), fill: "none", stroke: versionColor(version),
        "stroke-width": 2, "data-version": version,
      }));
    }
  }
  svg.replaceChildren(...nodes);
}

function showTraffic(traffic) {
  const points = traffic.points || [];
  const now = points.length ? points[points.length - 1].at : Date.now() / 1000;
  const rps = {}, errors = {}, colors = {};
  for (const point of points) {
    if (now - point.at > CHART_WINDOW_S) continue;
    for (const [version, sample] of Object.entries(point.versions)) {
      (rps[version] = rps[version] || []).push([point.at, sample.rps]);
      (errors[version] = errors[version] || []).push([point.at, sample.rps > 0 ? 100 * sample.errors / sample.rps : 0]);
      colors[version] = sample.color;
    }
  }
  drawChart($("chart-rps"), rps, now, "");
  drawChart($("chart-errors"), errors, now, "%");
  const latest = points.length ? points[points.length - 1].versions : {};
  $("legend").replaceChildren(...Object.keys(rps).sort((a, b) => a - b).map((version) => el("span", { "data-version": version },
    el("i", { style: `background:${versionColor(version)}` }),
    `v${version} (${colors[version] || "?"}) ${latest[version] ? fmt(latest[version].rps, 3) : "0"} req/s`)));
  state.pods = traffic.pods || {};
}

// -- polling -------------------------------------------------------------------------------

async function refresh() {
  try {
    const status = await getJson("status");
    state.status = status;
    $("model").textContent = status.model;
    showColor("live", status.live, state.pods);
    showColor("standby", status.standby, state.pods);
    showControls(status);
    const op = status.operation;
    const key = op ? `${op.id}:${op.status}:${(op.steps || []).length}` : "idle";
    if (key !== state.lastOpKey) {
      state.history = await getJson("history?limit=20");
      showHistory(state.history);
      state.lastOpKey = key;
    }
    // The running operation, else the last finished one (its outcome and reason stay up).
    showOperation(op || state.history[0]);
    $("connection").textContent = "live";
    $("connection").className = "badge ok";
  } catch (error) {
    $("connection").textContent = `controller unreachable (${error.message})`;
    $("connection").className = "badge down";
  }
}

async function refreshTraffic() {
  try {
    showTraffic(await getJson("page/traffic"));
  } catch (error) {
    // shown by the status poll's badge; the chart keeps its last picture
  }
}

async function start() {
  addColorCards();
  try {
    state.config = await getJson("page/config");
  } catch (error) {
    state.config = { token_required: true };
  }
  $("btn-rollback").addEventListener("click", () => act("rollback", "rollback"));
  $("btn-promote").addEventListener("click", () => act("promote", "promote"));
  $("btn-abort").addEventListener("click", () => act("abort", "abort"));
  await refreshTraffic();
  await refresh();
  setInterval(refresh, STATUS_EVERY_MS);
  setInterval(refreshTraffic, TRAFFIC_EVERY_MS);
}

start();

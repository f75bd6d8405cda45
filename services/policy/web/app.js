/*
 * The approvals page: lists the pending credential requests live (the SSE
 * stream of GET /v1/approvals/stream, read with fetch so the token goes in
 * the Authorization header, never in a URL), and approves or denies them
 * (POST /v1/approvals/{id}/approve|deny). Text from requests is set with
 * textContent only: a requester's reason is never markup.
 */
"use strict";

const KEY = "sagewai.policy.token";
const approvals = new Map(); /* id -> approval */
let controller = null;
let retry = null;

function $(id) { return document.getElementById(id); }

function token() { return sessionStorage.getItem(KEY) || ""; }

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status" + (cls ? " " + cls : "");
}

function say(text) { $("message").textContent = text; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function timeLeft(a) {
  const ms = a.deadline_ms - Date.now();
  if (ms <= 0) return "due";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
}

function shortId(s) { return s ? s.slice(0, 8) : ""; }

async function decide(a, approve, why) {
  const reason = why.value.trim() || (approve ? "approved on the page" : "denied on the page");
  say("sending…");
  try {
    const r = await fetch("/v1/approvals/" + encodeURIComponent(a.id) + "/" +
      (approve ? "approve" : "deny"), {
      method: "POST",
      headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
      body: JSON.stringify({ reason: reason }),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      say("refused: " + ((j.error && j.error.message) || r.status));
      return;
    }
    if (upsert(j)) render();
    say((approve ? "approved " : "denied ") + a.name);
  } catch (e) {
    say("failed: " + e);
  }
}

function render() {
  const pending = $("pending").tBodies[0], recent = $("recent").tBodies[0];
  const list = Array.from(approvals.values());
  pending.replaceChildren();
  recent.replaceChildren();
  list.filter(a => a.status === "pending")
    .sort((x, y) => x.deadline_ms - y.deadline_ms)
    .forEach(a => {
      const tr = document.createElement("tr");
      tr.dataset.id = a.id;
      tr.className = "pending";
      cell(tr, shortId(a.run_id), "code").title = a.run_id;
      cell(tr, a.step);
      cell(tr, a.name, "code");
      cell(tr, a.scope, "code");
      cell(tr, a.request_reason);
      cell(tr, a.rule, "code");
      cell(tr, timeLeft(a), "left");
      const why = document.createElement("input");
      why.className = "why";
      why.placeholder = "reason";
      why.maxLength = 500;
      cell(tr, "").appendChild(why);
      const td = cell(tr, "");
      const ok = document.createElement("button");
      ok.className = "approve";
      ok.textContent = "Approve";
      ok.addEventListener("click", () => decide(a, true, why));
      const no = document.createElement("button");
      no.className = "deny";
      no.textContent = "Deny";
      no.addEventListener("click", () => decide(a, false, why));
      td.append(ok, " ", no);
      pending.appendChild(tr);
    });
  $("none").hidden = pending.rows.length > 0;
  list.filter(a => a.status !== "pending")
    .sort((x, y) => (y.decided_ms || 0) - (x.decided_ms || 0))
    .slice(0, 100)
    .forEach(a => {
      const tr = document.createElement("tr");
      tr.dataset.id = a.id;
      tr.className = a.status;
      cell(tr, shortId(a.run_id), "code").title = a.run_id;
      cell(tr, a.step);
      cell(tr, a.name, "code");
      cell(tr, a.scope, "code");
      const st = cell(tr, "");
      const tag = document.createElement("span");
      tag.className = "tag " + a.status;
      tag.textContent = a.status;
      st.appendChild(tag);
      cell(tr, a.approver || (a.status === "expired" ? "deadline" :
        a.status === "withdrawn" ? "withdrawn" : ""));
      cell(tr, a.decision_reason);
      recent.appendChild(tr);
    });
}

/* Keep a; true when it changed what is shown (a repeat changes nothing,
 * so a reason being typed is not swept away by a re-render). */
function upsert(a) {
  if (!a || typeof a.id !== "string") return false;
  const old = approvals.get(a.id);
  if (old && JSON.stringify(old) === JSON.stringify(a)) return false;
  approvals.set(a.id, a);
  return true;
}

function handle(event, data) {
  let j;
  try { j = JSON.parse(data); } catch (e) { return; }
  if (event === "snapshot") {
    approvals.clear();
    (j.approvals || []).forEach(upsert);
    render();
  } else if (event === "approval" && upsert(j)) {
    render();
  }
}

async function connect() {
  if (controller) controller.abort();
  controller = new AbortController();
  clearTimeout(retry);
  setStatus("connecting…");
  let r;
  try {
    r = await fetch("/v1/approvals/stream", {
      headers: { "Authorization": "Bearer " + token() },
      signal: controller.signal,
    });
  } catch (e) {
    setStatus("disconnected", "error");
    retry = setTimeout(connect, 3000);
    return;
  }
  if (r.status === 401 || r.status === 403) {
    setStatus("token refused", "error");
    showLogin();
    return;
  }
  if (!r.ok || !r.body) {
    setStatus("error " + r.status, "error");
    retry = setTimeout(connect, 3000);
    return;
  }
  setStatus("live", "live");
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message", data = "";
        block.split("\n").forEach(line => {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        });
        if (data) handle(event, data);
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  setStatus("disconnected", "error");
  retry = setTimeout(connect, 3000);
}

function showLogin() {
  $("login").hidden = false;
  $("main").hidden = true;
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    start();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    if (controller) controller.abort();
    approvals.clear();
    render();
    setStatus("not connected");
    showLogin();
  });
  setInterval(() => {
    document.querySelectorAll("#pending tr[data-id]").forEach(tr => {
      const a = approvals.get(tr.dataset.id);
      const td = tr.querySelector("td.left");
      if (a && td) td.textContent = timeLeft(a);
    });
  }, 1000);
  if (token()) start(); else showLogin();
});

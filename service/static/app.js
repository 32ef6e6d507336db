// The search page: plain DOM, no build step. Talks to the JSON API of the same origin.
"use strict";

const $ = (id) => document.getElementById(id);

function fmtTime(s) {
  const m = Math.floor(s / 60);
  const sec = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${sec}`;
}

function apiHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = $("api-key").value || localStorage.getItem("t2v-api-key") || "";
  if (key) headers["X-API-Key"] = key;
  return headers;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body.error ? body.error.message : resp.statusText;
  } catch (_) {
    return resp.statusText;
  }
}

function play(moment) {
  const player = $("player");
  $("player-panel").hidden = false;
  $("now-playing").textContent = `${moment.title} — ${fmtTime(moment.start)}–${fmtTime(moment.end)}`;
  const src = moment.stream_url.split("#")[0];
  const seek = () => {
    player.currentTime = moment.start;
    player.play().catch(() => {});
  };
  if (player.dataset.src === src && player.readyState >= 1) {
    seek();
  } else {
    player.dataset.src = src;
    player.addEventListener("loadedmetadata", seek, { once: true });
    player.src = src;
    player.load();
  }
  player.dataset.start = String(moment.start);
}

function card(moment) {
  const el = document.createElement("article");
  el.className = "card";
  el.tabIndex = 0;
  el.dataset.videoId = moment.video_id;
  el.dataset.start = String(moment.start);
  const img = document.createElement("img");
  img.src = moment.thumbnail_url;
  img.alt = moment.title;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = moment.title;
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `${fmtTime(moment.start)} – ${fmtTime(moment.end)}`;
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = `score ${moment.score.toFixed(3)}`;
  meta.append(title, when, score);
  el.append(img, meta);
  el.addEventListener("click", () => play(moment));
  el.addEventListener("keydown", (e) => { if (e.key === "Enter") play(moment); });
  return el;
}

async function search(query) {
  $("status").textContent = "Searching…";
  const resp = await fetch("/v1/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, top_k: 12 }),
  });
  const results = $("results");
  results.replaceChildren();
  if (!resp.ok) {
    $("status").textContent = `Search failed: ${await errorText(resp)}`;
    return;
  }
  const body = await resp.json();
  $("status").textContent = `${body.results.length} moments in ${body.took_ms.toFixed(0)} ms`;
  for (const m of body.results) results.append(card(m));
}

function showJob(job) {
  $("job").hidden = false;
  $("job-progress").value = job.progress;
  $("job-state").textContent = `${job.state}: ${job.finished}/${job.total}`;
  const list = $("job-items");
  list.replaceChildren();
  for (const it of job.items) {
    const li = document.createElement("li");
    li.className = `state-${it.state}`;
    li.textContent = `${it.name}: ${it.state}${it.reason ? " (" + it.reason + ")" : ""}`;
    list.append(li);
  }
}

async function followJob(id) {
  for (;;) {
    const resp = await fetch(`/v1/jobs/${id}`, { headers: apiHeaders() });
    if (!resp.ok) {
      $("job-state").textContent = `job status failed: ${await errorText(resp)}`;
      return;
    }
    const job = await resp.json();
    showJob(job);
    if (job.state === "done") return;
    await new Promise((r) => setTimeout(r, 700));
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("query").value.trim();
  if (q) search(q);
});

$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("api-key").value;
  if (key) localStorage.setItem("t2v-api-key", key);
  const form = new FormData();
  for (const f of $("files").files) form.append("files", f, f.name);
  $("job").hidden = false;
  $("job-state").textContent = "uploading…";
  const resp = await fetch("/v1/ingest", { method: "POST", body: form, headers: apiHeaders() });
  if (!resp.ok) {
    $("job-state").textContent = `upload refused: ${await errorText(resp)}`;
    return;
  }
  followJob((await resp.json()).id);
});

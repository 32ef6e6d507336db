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
  if (moment.explanation) el.append(bestFrames(moment));
  el.addEventListener("click", () => play(moment));
  el.addEventListener("keydown", (e) => { if (e.key === "Enter") play(moment); });
  return el;
}

// The best frames of an explained moment: small thumbnails that seek the player there.
function bestFrames(moment) {
  const row = document.createElement("div");
  row.className = "frames";
  for (const f of moment.explanation.top_frames.slice(0, 3)) {
    const img = document.createElement("img");
    img.className = "frame-thumb";
    img.src = `/v1/videos/${moment.video_id}/thumbnail?t=${f.time.toFixed(2)}`;
    img.alt = `frame at ${fmtTime(f.time)}`;
    img.title = `${fmtTime(f.time)}: contributes ${f.contribution.toFixed(3)}`;
    img.dataset.t = String(f.time);
    img.addEventListener("click", (e) => {
      e.stopPropagation(); // seek to the frame, not to the moment's start
      play(Object.assign({}, moment, { start: f.time }));
    });
    row.append(img);
  }
  return row;
}

// A strip of the whole video shaded by how well each clip window matches the query:
// one restricted search scores every window of that video.
async function timelineStrip(query, moment, el) {
  const [vid, hits] = await Promise.all([
    fetch(`/v1/videos/${moment.video_id}`).then((r) => (r.ok ? r.json() : null)),
    fetch("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, top_k: 100, video_ids: [moment.video_id] }),
    }).then((r) => (r.ok ? r.json() : null)),
  ]);
  if (!vid || !hits || !hits.results.length) return;
  const duration = Math.max(vid.duration, ...hits.results.map((h) => h.end));
  const scores = hits.results.map((h) => h.score);
  const lo = Math.min(...scores);
  const span = Math.max(...scores) - lo || 1;
  const strip = document.createElement("div");
  strip.className = "strip";
  strip.title = "relevance of each moment of the video to the query";
  // weakest first, so the best window is drawn on top where windows overlap
  for (const h of [...hits.results].reverse()) {
    const seg = document.createElement("div");
    seg.className = "seg";
    seg.style.left = `${(100 * h.start) / duration}%`;
    seg.style.width = `${(100 * (h.end - h.start)) / duration}%`;
    seg.style.opacity = String(0.15 + (0.85 * (h.score - lo)) / span);
    seg.dataset.score = String(h.score);
    strip.append(seg);
  }
  const mark = document.createElement("div");
  mark.className = "mark";
  mark.style.left = `${(100 * moment.start) / duration}%`;
  mark.style.width = `${(100 * (moment.end - moment.start)) / duration}%`;
  strip.append(mark);
  el.querySelector(".meta").append(strip);
}

async function search(query) {
  $("status").textContent = "Searching…";
  const resp = await fetch("/v1/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, top_k: 12, explain: true }),
  });
  const results = $("results");
  results.replaceChildren();
  if (!resp.ok) {
    $("status").textContent = `Search failed: ${await errorText(resp)}`;
    return;
  }
  const body = await resp.json();
  $("status").textContent = `${body.results.length} moments in ${body.took_ms.toFixed(0)} ms`;
  for (const m of body.results) {
    const el = card(m);
    results.append(el);
    timelineStrip(query, m, el).catch(() => {});
  }
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

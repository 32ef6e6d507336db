// The search page: plain DOM, no build step. Talks to the JSON API of the same origin.
// One POST /v1/search per search (grouped per video, the other moments folded in the response),
// one thumbnail per card; the query lives in the URL (?q=), so back/forward and links work.
"use strict";

const $ = (id) => document.getElementById(id);
const TOP_K = 12; // videos per search
const MOMENTS_PER_VIDEO = 20; // folded under each card, and the card's relevance strip
const SEARCH_TIMEOUT_MS = 60_000;

function fmtTime(s) {
  const m = Math.floor(s / 60);
  const sec = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${sec}`;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// --- API -------------------------------------------------------------------------------------

function apiKey() {
  return $("api-key").value || localStorage.getItem("t2v-api-key") || "";
}

function writeHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  return headers;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body.error ? body.error.message : `${resp.status} ${resp.statusText}`;
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

// --- status line -----------------------------------------------------------------------------

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

function setBusy(busy) {
  $("search-button").disabled = busy;
  $("search-form").classList.toggle("busy", busy);
  $("results").setAttribute("aria-busy", String(busy));
}

function showNotice(kind, ...content) {
  const n = $("notice");
  n.className = `notice ${kind}`;
  n.replaceChildren(...content);
  n.hidden = false;
}

function hideNotice() {
  $("notice").hidden = true;
  $("notice").replaceChildren();
}

// --- the player: a dialog over the page, so it is always where the user is looking ----------

const player = { moment: null, opener: null, raf: 0, ended: false };

function openPlayer(moment, opener) {
  const dialog = $("player-dialog");
  const video = $("player");
  player.moment = moment;
  player.opener = opener || document.activeElement;
  player.ended = false;
  $("now-playing").textContent = moment.title;
  $("moment-info").textContent = `moment ${fmtTime(moment.start)} – ${fmtTime(moment.end)}`;
  $("moment-state").textContent = "";
  const src = moment.stream_url.split("#")[0];
  const seek = () => {
    drawMomentBar();
    video.currentTime = moment.start;
    video.play().catch(() => {});
  };
  if (!dialog.open) dialog.showModal();
  if (video.dataset.src === src && video.readyState >= 1) {
    seek();
  } else {
    video.dataset.src = src;
    video.addEventListener("loadedmetadata", seek, { once: true });
    video.src = src;
    video.load();
  }
  video.dataset.start = String(moment.start);
  video.dataset.end = String(moment.end);
  video.focus();
  watchMoment();
}

function drawMomentBar() {
  const video = $("player");
  const m = player.moment;
  if (!m) return;
  const duration = Number.isFinite(video.duration) && video.duration > 0 ? video.duration : m.end;
  const range = $("moment-range");
  range.style.left = `${(100 * m.start) / duration}%`;
  range.style.width = `${(100 * Math.min(m.end - m.start, duration - m.start)) / duration}%`;
  $("playhead").style.left = `${(100 * Math.min(video.currentTime, duration)) / duration}%`;
}

// Stop (or loop) at the moment's end: checked every animation frame while the dialog is open,
// finer than 'timeupdate' (4 per second), so playback does not run on into the next scene.
function watchMoment() {
  cancelAnimationFrame(player.raf);
  const tick = () => {
    const video = $("player");
    const m = player.moment;
    if (!m || !$("player-dialog").open) return;
    // a moment that ends with its video ends there on its own ('ended'): loop it all the same
    if (!player.ended && (video.ended || (!video.paused && video.currentTime >= m.end))) {
      if ($("loop").checked) {
        video.currentTime = m.start;
        if (video.paused) video.play().catch(() => {});
      } else {
        video.pause();
        video.currentTime = m.end;
        player.ended = true;
        $("moment-state").textContent = "end of the moment";
      }
    }
    drawMomentBar();
    player.raf = requestAnimationFrame(tick);
  };
  player.raf = requestAnimationFrame(tick);
}

function replayMoment() {
  const m = player.moment;
  if (!m) return;
  const video = $("player");
  player.ended = false;
  $("moment-state").textContent = "";
  video.currentTime = m.start;
  video.play().catch(() => {});
}

function closePlayer() {
  const dialog = $("player-dialog");
  if (dialog.open) dialog.close();
}

$("player-dialog").addEventListener("close", () => {
  cancelAnimationFrame(player.raf);
  $("player").pause();
  if (player.opener && document.contains(player.opener)) player.opener.focus();
});
$("close-player").addEventListener("click", closePlayer);
$("replay").addEventListener("click", replayMoment);
$("player-dialog").addEventListener("click", (e) => {
  if (e.target === $("player-dialog")) closePlayer(); // a click on the backdrop
});
$("moment-bar").addEventListener("click", (e) => {
  const video = $("player");
  if (!Number.isFinite(video.duration)) return;
  const box = $("moment-bar").getBoundingClientRect();
  video.currentTime = ((e.clientX - box.left) / box.width) * video.duration;
});
$("player-dialog").addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement && e.target.type !== "checkbox") return;
  const video = $("player");
  const key = e.key.toLowerCase();
  if (key === " " || key === "k") {
    e.preventDefault();
    if (video.paused) {
      if (player.ended) replayMoment();
      else video.play().catch(() => {});
    } else {
      video.pause();
    }
  } else if (key === "r") {
    replayMoment();
  } else if (key === "l") {
    $("loop").checked = !$("loop").checked;
  }
});

// --- result cards ----------------------------------------------------------------------------

// One card per video: its best moment (the image is the frame that matched best), the other
// moments of the video folded under it, and a strip of where in the video the query matches.
// Everything a card shows about a moment is built here.
function card(moment) {
  const node = el("article", { className: "card", tabIndex: 0 });
  node.dataset.videoId = String(moment.video_id);
  node.dataset.start = String(moment.start);
  node.dataset.end = String(moment.end);
  node.dataset.bestFrame = String(moment.best_frame_s);
  if (moment.weak) node.classList.add("weak");
  node.setAttribute("aria-label", `${moment.title}, ${fmtTime(moment.start)} to ${fmtTime(moment.end)}`);
  const img = el("img", {
    src: moment.thumbnail_url,
    alt: `${moment.title} at ${fmtTime(moment.best_frame_s)}`,
    loading: "lazy",
    decoding: "async",
    width: 320,
    height: 200,
  });
  const badge = moment.weak ? el("span", { className: "badge", textContent: "weak match" }) : null;
  const meta = el(
    "div",
    { className: "meta" },
    el("div", { className: "title", textContent: moment.title, title: moment.title }),
    el(
      "div",
      { className: "when" },
      `${fmtTime(moment.start)} – ${fmtTime(moment.end)}`,
      el("span", { className: "score", textContent: ` · score ${moment.score.toFixed(3)}` }),
      badge,
    ),
  );
  meta.append(...matchedLines(moment));
  const strip = relevanceStrip(moment);
  if (strip) meta.append(strip);
  node.append(el("div", { className: "thumb" }, img, el("span", { className: "play", textContent: "▶" })), meta);
  if (moment.more && moment.more.length) node.append(otherMoments(moment));
  node.addEventListener("click", (e) => {
    if (e.target.closest(".more")) return; // the folded list plays its own moments
    openPlayer(moment, node);
  });
  node.addEventListener("keydown", (e) => {
    if (e.target !== node) return;
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      openPlayer(moment, node);
    }
  });
  return node;
}

// The text lines a moment matched ("said at 1:23: ..."), the query's words marked.
const SAID = { subtitles: "subtitled", speech: "said", ocr: "on screen" };
let queryWords = []; // of the search being shown, lower case

function matchedLines(moment) {
  return (moment.matches || []).map((m) => {
    const line = el("div", { className: "said" }, `${SAID[m.source] || m.source} at ${fmtTime(m.start)}: `);
    for (const part of m.text.split(/(\s+)/)) {
      const word = part.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
      line.append(word && queryWords.includes(word) ? el("mark", { textContent: part }) : part);
    }
    return line;
  });
}

// The video's other moments, folded: their thumbnails load only when unfolded.
function otherMoments(moment) {
  const n = moment.more.length;
  const list = el("ol", { className: "moments" });
  const box = el(
    "details",
    { className: "more" },
    el("summary", { textContent: `${n} more moment${n > 1 ? "s" : ""} in this video` }),
    list,
  );
  box.addEventListener("toggle", () => {
    if (!box.open || list.childElementCount) return;
    for (const m of moment.more) {
      const item = el(
        "button",
        { type: "button", className: m.weak ? "moment weak" : "moment" },
        el("img", { src: m.thumbnail_url, alt: "", loading: "lazy", width: 64, height: 40 }),
        el("span", { textContent: `${fmtTime(m.start)} – ${fmtTime(m.end)}` }),
        el("span", { className: "score", textContent: m.score.toFixed(3) }),
      );
      item.dataset.start = String(m.start);
      item.addEventListener("click", () => openPlayer(m, item));
      list.append(el("li", {}, item));
    }
  });
  return box;
}

// A strip of the video shaded by how well each returned window matches (from the same response).
function relevanceStrip(moment) {
  const all = [moment, ...(moment.more || [])];
  const duration = Math.max(...all.map((m) => m.end));
  if (!(duration > 0)) return null;
  const scores = all.map((m) => m.score);
  const lo = Math.min(...scores);
  const span = Math.max(...scores) - lo || 1;
  const strip = el("div", { className: "strip", title: "where in the video the query matches" });
  for (const m of [...all].reverse()) {
    // weakest first, so the best window is drawn on top where windows overlap
    const seg = el("div", { className: "seg" });
    seg.style.left = `${(100 * m.start) / duration}%`;
    seg.style.width = `${(100 * (m.end - m.start)) / duration}%`;
    seg.style.opacity = String(0.15 + (0.85 * (m.score - lo)) / span);
    seg.dataset.score = String(m.score);
    strip.append(seg);
  }
  const mark = el("div", { className: "mark" });
  mark.style.left = `${(100 * moment.start) / duration}%`;
  mark.style.width = `${(100 * (moment.end - moment.start)) / duration}%`;
  strip.append(mark);
  return strip;
}

// --- search ----------------------------------------------------------------------------------

let inFlight = null; // the AbortController of the search being shown

async function search(query) {
  if (inFlight) inFlight.abort();
  const ctl = new AbortController();
  inFlight = ctl;
  const timer = setTimeout(() => ctl.abort("timeout"), SEARCH_TIMEOUT_MS);
  setBusy(true);
  hideNotice();
  setStatus("Searching…", "busy");
  let resp;
  try {
    resp = await fetch("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        query,
        top_k: TOP_K,
        group_by_video: true,
        moments_per_video: MOMENTS_PER_VIDEO,
        ...($("sources").value ? { sources: $("sources").value.split(",") } : {}),
      }),
      signal: ctl.signal,
    });
  } catch (err) {
    if (inFlight !== ctl) return; // replaced by a newer search
    const why = ctl.signal.reason === "timeout" ? "the server did not answer in time" : "the server cannot be reached";
    return searchFailed(query, `Search failed: ${why}.`);
  } finally {
    clearTimeout(timer);
  }
  if (inFlight !== ctl) return;
  if (!resp.ok) return searchFailed(query, `Search failed: ${await errorText(resp)}`);
  let body;
  try {
    body = await resp.json();
  } catch (_) {
    return searchFailed(query, "Search failed: the server sent an unreadable answer.");
  }
  if (inFlight !== ctl) return;
  inFlight = null;
  setBusy(false);
  await showResults(query, body);
}

function searchFailed(query, message) {
  inFlight = null;
  setBusy(false);
  setStatus(message, "error");
  const retry = el("button", { type: "button", textContent: "Try again" });
  retry.addEventListener("click", () => search(query));
  showNotice("error", el("span", { textContent: message + " " }), retry);
}

async function showResults(query, body) {
  const results = body.results;
  queryWords = (query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []);
  const strong = results.filter((m) => !m.weak);
  const weak = results.filter((m) => m.weak);
  const took = `${body.took_ms.toFixed(0)} ms`;
  $("results").replaceChildren(...(strong.length ? strong : weak).map(card));
  $("weak-results").replaceChildren(...(strong.length ? weak.map(card) : []));
  $("weak").hidden = !(strong.length && weak.length);
  $("weak").open = false;
  $("weak-summary").textContent = `${weak.length} weak match${weak.length === 1 ? "" : "es"}`;
  if (!results.length) {
    const total = await libraryTotal();
    if (total === 0) {
      setStatus("The library is empty.", "");
      const link = el("a", { href: "/?view=library", textContent: "Add videos in the Library" });
      link.addEventListener("click", (e) => {
        e.preventDefault();
        go({ view: "library" });
      });
      showNotice("empty", el("span", { textContent: "Nothing is indexed yet. " }), link, ".");
    } else {
      setStatus(`No moments found (${took}).`, "");
      showNotice("empty", el("span", { textContent: "No moment matches. Try other words." }));
    }
    return;
  }
  if (!strong.length) {
    setStatus(`No good match (${took}).`, "warn");
    showNotice(
      "warn",
      el("strong", { textContent: `No good match for “${query}”.` }),
      el("span", { textContent: " These are the closest moments, all weak matches:" }),
    );
    return;
  }
  const videos = `${strong.length} video${strong.length === 1 ? "" : "s"}`;
  setStatus(`${videos} with a good match in ${took}`, "");
}

async function libraryTotal() {
  try {
    const resp = await fetch("/v1/videos?limit=1");
    return resp.ok ? (await resp.json()).total : null;
  } catch (_) {
    return null;
  }
}

// --- keyboard: "/" to search, arrows between cards -------------------------------------------

function visibleCards() {
  return [...document.querySelectorAll("#search-view .card")].filter((c) => c.offsetParent !== null);
}

document.addEventListener("keydown", (e) => {
  if ($("player-dialog").open || e.altKey || e.ctrlKey || e.metaKey) return;
  const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("query").focus();
    $("query").select();
    return;
  }
  const arrows = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"];
  if (!arrows.includes(e.key)) return;
  const cards = visibleCards();
  if (!cards.length) return;
  if (e.target === $("query") && e.key === "ArrowDown") {
    e.preventDefault();
    cards[0].focus();
    return;
  }
  const at = cards.indexOf(e.target);
  if (at < 0) return;
  e.preventDefault();
  const perRow = cards.filter((c) => c.offsetTop === cards[0].offsetTop).length || 1;
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow }[e.key];
  const next = at + step;
  if (next < 0 && e.key === "ArrowUp") $("query").focus();
  else if (next >= 0 && next < cards.length) cards[next].focus();
});

// --- views and the URL -----------------------------------------------------------------------

function go(state, replace) {
  const params = new URLSearchParams();
  if (state.view === "library") params.set("view", "library");
  else if (state.q) params.set("q", state.q);
  const url = `/${params.toString() ? "?" + params : ""}`;
  if (replace) history.replaceState(null, "", url);
  else if (url !== location.pathname + location.search) history.pushState(null, "", url);
  route();
}

function route() {
  const params = new URLSearchParams(location.search);
  const library = params.get("view") === "library";
  $("search-view").hidden = library;
  $("library-view").hidden = !library;
  $("nav-search").toggleAttribute("aria-current", !library);
  $("nav-library").toggleAttribute("aria-current", library);
  document.title = library ? "Library · T2V search" : "T2V search";
  if (library) {
    loadLibrary();
    return;
  }
  const q = (params.get("q") || "").trim();
  $("query").value = q;
  if (q) {
    document.title = `${q} · T2V search`;
    search(q);
  } else {
    $("results").replaceChildren();
    $("weak").hidden = true;
    hideNotice();
    setStatus("", "");
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("query").value.trim();
  if (!q) {
    setStatus("Type what you are looking for, e.g. “a red circle moving left”.", "error");
    $("query").focus();
    return;
  }
  const current = new URLSearchParams(location.search);
  if (current.get("q") === q && !current.get("view")) search(q); // same query: search again
  else go({ q });
});

for (const a of document.querySelectorAll("a[data-view]")) {
  a.addEventListener("click", (e) => {
    e.preventDefault();
    go({ view: a.dataset.view, q: a.dataset.view === "search" ? $("query").value.trim() : "" });
  });
}
window.addEventListener("popstate", route);

// --- the library: list, delete, add ----------------------------------------------------------

const PAGE = 50;
let libraryShown = 0;

function setLibraryStatus(text, kind) {
  $("library-status").textContent = text;
  $("library-status").className = kind || "";
}

async function loadLibrary(append) {
  const offset = append ? libraryShown : 0;
  if (!append) setLibraryStatus("Loading…", "busy");
  let resp;
  try {
    resp = await fetch(`/v1/videos?offset=${offset}&limit=${PAGE}`);
  } catch (_) {
    setLibraryStatus("Cannot reach the server.", "error");
    return;
  }
  if (!resp.ok) {
    setLibraryStatus(`Cannot list the library: ${await errorText(resp)}`, "error");
    return;
  }
  const page = await resp.json();
  const rows = page.items.map(videoRow);
  if (append) $("video-list").append(...rows);
  else $("video-list").replaceChildren(...rows);
  libraryShown = offset + page.items.length;
  $("library-count").textContent = `(${page.total} video${page.total === 1 ? "" : "s"})`;
  $("more-videos").hidden = libraryShown >= page.total;
  setLibraryStatus(page.total ? "" : "The library is empty: index a server folder or upload videos above.", "");
}

function videoRow(v) {
  const del = el("button", { type: "button", className: "delete", textContent: "Delete" });
  const row = el(
    "li",
    { className: "video" },
    el("img", { src: v.thumbnail_url, alt: "", loading: "lazy", width: 96, height: 60 }),
    el(
      "div",
      { className: "info" },
      el("div", { className: "title", textContent: v.title }),
      el("div", {
        className: "facts",
        textContent: [fmtTime(v.duration), `${v.clips} moment${v.clips === 1 ? "" : "s"}`, v.filename]
          .filter(Boolean)
          .join(" · "),
      }),
    ),
    del,
  );
  row.dataset.videoId = String(v.id);
  // two steps, no browser pop-up: the first click asks, the second deletes
  let armed = 0;
  del.addEventListener("click", async () => {
    if (!armed) {
      del.textContent = "Confirm delete";
      del.classList.add("armed");
      armed = setTimeout(() => {
        armed = 0;
        del.textContent = "Delete";
        del.classList.remove("armed");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = 0;
    del.disabled = true;
    let resp;
    try {
      resp = await fetch(`/v1/videos/${v.id}`, { method: "DELETE", headers: writeHeaders() });
    } catch (_) {
      resp = null;
    }
    if (resp && resp.ok) {
      row.remove();
      libraryShown -= 1;
      setLibraryStatus(`Deleted “${v.title}”.`, "");
      const total = parseInt(($("library-count").textContent.match(/\d+/) || ["1"])[0], 10) - 1;
      $("library-count").textContent = `(${total} video${total === 1 ? "" : "s"})`;
      return;
    }
    del.disabled = false;
    del.textContent = "Delete";
    del.classList.remove("armed");
    const why = resp ? await errorText(resp) : "the server cannot be reached";
    const hint = resp && (resp.status === 401 || resp.status === 403) ? " Enter the API key above." : "";
    setLibraryStatus(`Could not delete “${v.title}”: ${why}.${hint}`, "error");
    if (hint) $("api-key").focus();
  });
  return row;
}

$("more-videos").addEventListener("click", () => loadLibrary(true));

$("api-key").value = localStorage.getItem("t2v-api-key") || "";
$("api-key").addEventListener("change", () => localStorage.setItem("t2v-api-key", $("api-key").value));
$("key-form").addEventListener("submit", (e) => e.preventDefault());

function showJob(job) {
  $("job").hidden = false;
  $("job-progress").value = job.progress;
  $("job-state").textContent = `${job.state}: ${job.finished}/${job.total}`;
  $("job-items").replaceChildren(
    ...job.items.map((it) =>
      el("li", {
        className: `state-${it.state}`,
        textContent: `${it.name}: ${it.state}${it.reason ? " (" + it.reason + ")" : ""}`,
      }),
    ),
  );
}

async function followJob(id) {
  for (;;) {
    let resp;
    try {
      resp = await fetch(`/v1/jobs/${id}`, { headers: writeHeaders() });
    } catch (_) {
      $("job-state").textContent = "lost the server while following the job";
      return;
    }
    if (!resp.ok) {
      $("job-state").textContent = `job status failed: ${await errorText(resp)}`;
      return;
    }
    const job = await resp.json();
    showJob(job);
    if (job.state === "done") {
      if (!$("library-view").hidden) loadLibrary();
      return;
    }
    await new Promise((r) => setTimeout(r, 700));
  }
}

async function submitJob(request, what) {
  $("job").hidden = false;
  $("job-items").replaceChildren();
  $("job-progress").value = 0;
  $("job-state").textContent = what;
  let resp;
  try {
    resp = await fetch("/v1/ingest", Object.assign({ method: "POST" }, request));
  } catch (_) {
    $("job-state").textContent = "refused: the server cannot be reached";
    return;
  }
  if (!resp.ok) {
    $("job-state").textContent = `refused: ${await errorText(resp)}`;
    return;
  }
  followJob((await resp.json()).id);
}

$("folder-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const path = $("folder").value.trim();
  if (!path) return;
  submitJob(
    {
      headers: writeHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ paths: [path] }),
    },
    "queueing the folder…",
  );
});

$("upload-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const form = new FormData();
  for (const f of $("files").files) form.append("files", f, f.name);
  submitJob({ headers: writeHeaders(), body: form }, "uploading…");
});

route();
$("query").focus();

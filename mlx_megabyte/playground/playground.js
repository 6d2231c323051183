// The playground: streams a completion with per-byte logprobs from this server and shades every byte by
// the model's surprise at it (bits = -log2 p). Plain JavaScript, no build step, no network but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const errors = $("errors");
const LN2 = Math.log(2);

// Anything that goes wrong in the page is shown on it (and the browser test reads it from here).
function report(message) {
  errors.hidden = false;
  errors.textContent += message + "\n";
}
window.addEventListener("error", (e) => report(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => report(`error: ${e.reason}`));
const consoleError = console.error.bind(console);
console.error = (...args) => { report(args.join(" ")); consoleError(...args); };

const state = { model: null, controller: null, cells: [], started: 0, generated: 0, storyBits: 0, storyBytes: 0,
                promptBits: 0, promptBytes: 0, pending: [] };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || sessionStorage.getItem("mlx-megabyte-key");
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function onCommand() { return document.querySelector("input[name=mode]:checked").value === "command"; }

function requestBody() {
  const body = {
    model: state.model ? state.model.id : "megabyte",
    prompt: $("prompt").value,
    max_tokens: Math.max(1, parseInt($("length").value, 10) || 1),
    temperature: parseFloat($("temperature").value),
    top_p: parseFloat($("top-p").value),
    logprobs: 5,
    echo: true,
    stream: true,
  };
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  if (onCommand()) {  // the server builds the TinyStories-Instruct prompt from these (and echoes it, shaded)
    for (const field of ["features", "words", "summary"]) {
      if ($(field).value.trim()) body[field] = $(field).value.trim();
    }
  }
  return body;
}

async function loadModel() {
  try {
    const response = await fetch("v1/models", { headers: headers() });
    if (response.status === 401) {
      $("key-row").hidden = false;
      $("model-info").textContent = "this server needs an API key";
      return;
    }
    const model = (await response.json()).data[0];
    state.model = model;
    $("length").max = model.max_tokens;
    $("model-info").textContent = `${model.id} \u00b7 ${(model.parameters / 1e6).toFixed(1)}M parameters \u00b7 ` +
      `${model.context_length}-byte context \u00b7 ${model.patching}`;
    if (model.media) {  // a model of pictures or sound: /v1/media, not stories
      state.media = model.media;
      $("prompt").hidden = true;
      $("write").textContent = model.media.kind === "image" ? "Draw" : "Play";
      $("length").value = model.media.kind === "image" ? 4 : 2;  // images, or seconds of sound
      $("model-info").textContent += ` \u00b7 ${model.media.kind === "image" ?
        `${model.media.layout.width}x${model.media.layout.height} ${model.media.layout.mode} images` :
        `${model.media.layout.rate} Hz sound`}`;
      return;
    }
    if (model.instruct === false) {  // its weights say no instruct data trained it: the server refuses the fields
      $("command-note").hidden = false;
      $("command-note").textContent = "This model was never tuned on instruct data, so the server refuses " +
        "stories on command; tune it with train --data builtin-instruct --mask-prompt.";
    }
  } catch (e) {
    $("model-info").textContent = "cannot reach the server";
  }
}

// --- the story view ---

function bitsOf(logprob) { return logprob === null || logprob === undefined ? null : -logprob / LN2; }

// Bytes arrive one token each; a character of several bytes comes as "" tokens and then the character.
// One cell per character: ASCII is one byte per cell, and a multi-byte cell is shaded by its bytes' sum.
function addBytes(logprobs, prompt) {
  const story = $("story");
  const fragment = document.createDocumentFragment();
  for (let i = 0; i < logprobs.tokens.length; i++) {
    state.pending.push({ byte: logprobs.bytes ? logprobs.bytes[i] : null, logprob: logprobs.token_logprobs[i],
                         top: logprobs.top_logprobs[i], patch: logprobs.patch_start ? logprobs.patch_start[i] : false });
    const text = logprobs.tokens[i];
    if (text === "") continue;
    const bytes = state.pending;
    state.pending = [];
    const known = bytes.filter((b) => b.logprob !== null);
    const bits = known.length ? known.reduce((sum, b) => sum + bitsOf(b.logprob), 0) : null;
    const cell = document.createElement("b");
    cell.textContent = text;
    cell.dataset.i = state.cells.length;
    if (bits !== null) cell.style.setProperty("--bits", Math.min(bits, 8).toFixed(2));
    if (prompt) cell.classList.add("prompt");
    if (bytes[0].patch) cell.classList.add("patch");
    if (text === "\n") cell.classList.add("nl");
    state.cells.push({ text, bytes, bits, prompt });
    if (bits !== null) {
      if (prompt) { state.promptBits += bits; state.promptBytes += bytes.length; }
      else { state.storyBits += bits; state.storyBytes += bytes.length; }
    }
    fragment.appendChild(cell);
  }
  story.appendChild(fragment);
}

function addPlainText(text) {  // text without logprobs (not expected from this server, but harmless)
  if (text) $("story").appendChild(document.createTextNode(text));
}

function showStats(done) {
  const seconds = (performance.now() - state.started) / 1000;
  const parts = [];
  if (state.storyBytes) parts.push(`${state.storyBytes} bytes`);
  if (seconds > 0 && state.storyBytes > 1) parts.push(`${(state.storyBytes / seconds).toFixed(0)} bytes/s`);
  if (state.promptBytes) parts.push(`prompt ${(state.promptBits / state.promptBytes).toFixed(2)} bits/byte`);
  if (state.storyBytes) parts.push(`story ${(state.storyBits / state.storyBytes).toFixed(2)} bits/byte`);
  if (done) parts.push(done);
  $("stats").textContent = parts.join(" \u00b7 ");
}

// --- the tooltip ---

function label(token) {
  if (token === " ") return "\u2423 space";
  if (token === "\n") return "\u21b5 newline";
  if (token === "\u0003") return "end of text";
  if (token === "\t") return "tab";
  return token;
}

function hex(byte) { return byte === null ? "" : "0x" + byte.toString(16).padStart(2, "0"); }

function showTip(cell) {
  const data = state.cells[cell.dataset.i];
  if (!data) return;
  document.querySelectorAll("#story b.active").forEach((b) => b.classList.remove("active"));
  cell.classList.add("active");
  const tip = $("tip");
  tip.textContent = "";
  const head = document.createElement("div");
  head.className = "big";
  head.textContent = `${label(data.text)} \u00b7 ${data.bytes.map((b) => hex(b.byte)).join(" ")}`;
  tip.appendChild(head);
  const line = document.createElement("div");
  const where = data.prompt ? "prompt" : "story";
  line.textContent = data.bits === null
    ? `${where} \u00b7 not predicted (outside the context)`
    : `${where} \u00b7 ${data.bits.toFixed(2)} bits \u00b7 p = ${Math.pow(2, -data.bits).toPrecision(2)}` +
      (data.bytes.length > 1 ? ` (${data.bytes.length} bytes)` : "") + (data.bytes[0].patch ? " \u00b7 starts a patch" : "");
  tip.appendChild(line);
  const top = data.bytes[0].top;
  if (top) {
    const table = document.createElement("table");
    Object.entries(top).sort((a, b) => b[1] - a[1]).forEach(([token, logprob]) => {
      const row = table.insertRow();
      row.insertCell().textContent = label(token);
      const p = Math.exp(logprob);
      row.insertCell().textContent = `${(p * 100).toFixed(1)}%`;
      const bar = row.insertCell();
      bar.className = "bar";
      const fill = document.createElement("i");
      fill.style.width = `${Math.max(2, p * 100)}%`;
      bar.appendChild(fill);
    });
    const caption = document.createElement("div");
    caption.textContent = data.bytes.length > 1 ? "likeliest alternatives for the first byte:" : "likeliest alternatives:";
    caption.style.marginTop = "0.35rem";
    tip.appendChild(caption);
    tip.appendChild(table);
  }
  tip.hidden = false;
  const box = cell.getBoundingClientRect();
  const left = Math.min(window.scrollX + box.left, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(8, left)}px`;
  tip.style.top = `${window.scrollY + box.bottom + 6}px`;
}

function hideTip() {
  $("tip").hidden = true;
  document.querySelectorAll("#story b.active").forEach((b) => b.classList.remove("active"));
}

$("story").addEventListener("mouseover", (e) => { if (e.target.matches("b")) showTip(e.target); });
$("story").addEventListener("mouseleave", hideTip);
$("story").addEventListener("click", (e) => { if (e.target.matches("b")) showTip(e.target); else hideTip(); });

// --- running a request ---

// Pictures and sound: the samples arrive whole, as base64 PNG (data[i].b64_png) or WAV (data[0].b64_wav).
async function writeMedia() {
  const kind = state.media.kind;
  const count = Math.max(1, parseInt($("length").value, 10) || 1);
  const body = { temperature: parseFloat($("temperature").value), top_p: parseFloat($("top-p").value) };
  if (kind === "image") body.n = Math.min(count, 16); else body.seconds = Math.min(count, 30);
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  $("story").textContent = "";
  $("stats").textContent = kind === "image" ? "drawing\u2026" : "composing\u2026";
  $("write").disabled = true;
  document.body.dataset.state = "running";
  const started = performance.now();
  try {
    const response = await fetch("v1/media", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const reply = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((reply.error && reply.error.message) || `the server answered ${response.status}`);
    for (const item of reply.data) {
      const element = document.createElement(kind === "image" ? "img" : "audio");
      if (kind === "image") {
        element.src = `data:image/png;base64,${item.b64_png}`;
        element.className = "sample-image";
        element.alt = `sample ${item.index + 1}`;
      } else {
        element.src = `data:audio/wav;base64,${item.b64_wav}`;
        element.controls = true;
      }
      $("story").appendChild(element);
    }
    $("stats").textContent = `${reply.data.length} ${kind === "image" ? "images" : "clip"} in ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s \u00b7 seed ${reply.seed}`;
    document.body.dataset.state = "done";
  } catch (e) {
    $("stats").textContent = `error: ${e.message}`;
    document.body.dataset.state = "error";
  } finally {
    $("write").disabled = false;
  }
}

async function write(event) {
  if (event) event.preventDefault();
  if (state.media) return writeMedia();
  if (state.controller) return;
  const body = requestBody();
  Object.assign(state, { cells: [], pending: [], generated: 0, storyBits: 0, storyBytes: 0, promptBits: 0,
                         promptBytes: 0, started: performance.now(), controller: new AbortController() });
  hideTip();
  $("story").textContent = "";
  $("stats").textContent = "writing\u2026";
  $("write").disabled = true;
  $("stop").disabled = false;
  document.body.dataset.state = "running";
  let finish = null;
  try {
    const response = await fetch("v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                     signal: state.controller.signal });
    if (!response.ok) {
      const reply = await response.json().catch(() => ({}));
      if (response.status === 401) $("key-row").hidden = false;
      throw new Error((reply.error && reply.error.message) || `the server answered ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) {
          if (choice.logprobs) addBytes(choice.logprobs, body.echo && !state.started_story);  // the echo comes first
          else addPlainText(choice.text);
          state.started_story = true;
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        showStats();
      }
    }
    const end = document.createElement("span");
    end.className = "end";
    end.textContent = finish === "length" ? "\u2014 length limit" : "\u2014 the end";
    $("story").appendChild(end);
    showStats(finish === "length" ? "stopped at the length limit" : "the model ended the story");
    document.body.dataset.state = "done";
  } catch (e) {
    if (e.name === "AbortError") {
      showStats("stopped");
      document.body.dataset.state = "done";
    } else {
      $("stats").textContent = `error: ${e.message}`;
      document.body.dataset.state = "error";
    }
  } finally {
    state.controller = null;
    state.started_story = false;
    $("write").disabled = false;
    $("stop").disabled = true;
  }
}

function showMode() {
  $("command").hidden = !onCommand();
  $("prompt").placeholder = onCommand() ? "(optional) Once upon a time" : "Once upon a time";
}

$("controls").addEventListener("submit", write);
for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", showMode);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) write(e);
});
for (const [input, shown, digits] of [["temperature", "temperature-value", 2], ["top-p", "top-p-value", 2]]) {
  const update = () => { $(shown).textContent = parseFloat($(input).value).toFixed(digits); };
  $(input).addEventListener("input", update);
  update();
}
$("show-patches").addEventListener("change", (e) => $("story").classList.toggle("patches", e.target.checked));
$("api-key").addEventListener("change", (e) => {
  sessionStorage.setItem("mlx-megabyte-key", e.target.value);
  loadModel();
});

$("copy").addEventListener("click", async () => {
  const text = JSON.stringify(requestBody(), null, 2);
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard permission (or not a secure context): select it for the user instead
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy").textContent = "Copied";
  setTimeout(() => { $("copy").textContent = "Copy as JSON"; }, 1500);
});

// ?prompt=...&temperature=...&top_p=...&max_tokens=...&seed=...&autorun=1 fill in (and start) a request;
// features, words or summary switch to "on command".
const query = new URLSearchParams(location.search);
if (["features", "words", "summary"].some((name) => query.has(name))) {
  document.querySelector("input[name=mode][value=command]").checked = true;
}
showMode();
for (const [name, id] of [["prompt", "prompt"], ["temperature", "temperature"], ["top_p", "top-p"],
                          ["max_tokens", "length"], ["seed", "seed"], ["features", "features"],
                          ["words", "words"], ["summary", "summary"]]) {
  if (query.has(name)) {
    $(id).value = query.get(name);
    $(id).dispatchEvent(new Event("input"));
  }
}
document.body.dataset.state = "idle";
loadModel().then(() => { if (query.get("autorun") === "1") write(); });

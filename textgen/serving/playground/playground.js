// The textgen playground. It uses the server's public API, as any client would:
//   GET  /v1/models        fills the model picker
//   POST /v1/completions   with "stream": true and "logprobs": 5; the reply is server-sent events,
//                          one "data: {json}" line per chunk, "data: [DONE]" at the end.
// Each written token becomes a <span> that remembers its five likeliest alternatives, shown on
// hover (or tap), and how surprised the model was by it (-log p), shown as colour when asked.

const $ = (id) => document.getElementById(id);
let running = null; // the AbortController of the generation in flight

function headers() {
  const key = $("api-key").value.trim() || localStorage.getItem("textgen-api-key") || "";
  if ($("api-key").value.trim()) localStorage.setItem("textgen-api-key", key);
  const result = { "Content-Type": "application/json" };
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  const body = await response.json();
  if (!response.ok) return showError(body);
  const picker = $("model");
  picker.replaceChildren(...body.data.map((model) => new Option(model.id, model.id)));
}

function showError(body) {
  $("status").className = "error";
  $("status").textContent = body && body.error ? body.error.message : String(body);
}

// The sliders show their value beside them; top-k at 0 means "off".
for (const [id, format] of [
  ["temperature", (v) => Number(v).toFixed(2)],
  ["top-k", (v) => (Number(v) === 0 ? "off" : v)],
  ["top-p", (v) => Number(v).toFixed(2)],
  ["length", (v) => v],
]) {
  const slider = $(id);
  const show = () => ($(`${id}-value`).textContent = format(slider.value));
  slider.addEventListener("input", show);
  show();
}

function requestBody() {
  const body = {
    model: $("model").value,
    prompt: $("prompt").value,
    max_tokens: Number($("length").value),
    temperature: Number($("temperature").value),
    stream: true,
    logprobs: 5,
  };
  if (Number($("top-k").value) > 0) body.top_k = Number($("top-k").value);
  if (Number($("top-p").value) < 1) body.top_p = Number($("top-p").value);
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  // The stop field takes \n and \t as escapes, so that a blank line can be typed as \n\n.
  const stop = $("stop").value.replaceAll("\\n", "\n").replaceAll("\\t", "\t");
  if (stop) body.stop = [stop];
  return body;
}

// Surprise in nats -> a background colour: pale for expected tokens, deep red for surprising ones.
function surpriseColour(logprob) {
  const strength = Math.min(1, -logprob / 6);
  return `rgba(220, 60, 40, ${(strength * 0.75).toFixed(3)})`;
}

function tokenSpan(text, entry) {
  const span = document.createElement("span");
  span.className = "token";
  span.textContent = text;
  span.dataset.logprob = entry.logprob;
  span.dataset.top = JSON.stringify(entry.top);
  if ($("surprise").checked) span.style.background = surpriseColour(entry.logprob);
  return span;
}

// Text and log-probability entries arrive separately (a stop string may hold text back):
// each entry takes its token's characters from the text received, in order.
class Writer {
  constructor(output) {
    this.output = output;
    this.text = "";
    this.entries = [];
  }
  add(text, logprobs) {
    this.text += text;
    if (logprobs) {
      logprobs.tokens.forEach((token, i) => {
        this.entries.push({ token, logprob: logprobs.token_logprobs[i], top: logprobs.top_logprobs[i] });
      });
    }
    while (this.entries.length && this.text.length >= this.entries[0].token.length) {
      const entry = this.entries.shift();
      this.output.append(tokenSpan(this.text.slice(0, entry.token.length), entry));
      this.text = this.text.slice(entry.token.length);
    }
  }
  finish() {
    if (this.text) this.output.append(document.createTextNode(this.text));
    this.text = "";
  }
}

async function generate() {
  $("status").className = "";
  $("status").textContent = "";
  const output = $("output");
  output.replaceChildren();
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt";
  promptSpan.textContent = $("prompt").value;
  output.append(promptSpan);
  running = new AbortController();
  $("generate").disabled = true;
  $("stop-button").disabled = false;
  const writer = new Writer(output);
  try {
    const response = await fetch("/v1/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(requestBody()),
      signal: running.signal,
    });
    if (!response.ok) return showError(await response.json());
    await readEvents(response, (chunk) => {
      for (const choice of chunk.choices) writer.add(choice.text, choice.logprobs);
      if (chunk.choices.some((choice) => choice.finish_reason)) {
        $("status").textContent = `finished: ${chunk.choices[0].finish_reason}`;
      }
    });
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    writer.finish();
    running = null;
    $("generate").disabled = false;
    $("stop-button").disabled = true;
  }
}

// Server-sent events: lines "data: ..." separated by a blank line; read as they arrive.
async function readEvents(response, onChunk) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") return;
      onChunk(JSON.parse(data));
    }
  }
}

// The tooltip: the model's five likeliest tokens where the pointer is, with their probabilities.
function showAlternatives(event) {
  const span = event.target.closest("span.token");
  const tooltip = $("tooltip");
  if (!span) return (tooltip.hidden = true);
  const rows = Object.entries(JSON.parse(span.dataset.top)).map(
    ([token, logprob]) => `<tr><td>${escapeHtml(JSON.stringify(token))}</td><td>${(100 * Math.exp(logprob)).toFixed(1)}%</td></tr>`,
  );
  const chosen = (100 * Math.exp(Number(span.dataset.logprob))).toFixed(1);
  tooltip.innerHTML = `<div>written: ${escapeHtml(JSON.stringify(span.textContent))} (${chosen}%)</div><table>${rows.join("")}</table>`;
  const box = span.getBoundingClientRect();
  const parent = tooltip.parentElement.getBoundingClientRect();
  tooltip.style.left = `${box.left - parent.left}px`;
  tooltip.style.top = `${box.bottom - parent.top + 4}px`;
  tooltip.hidden = false;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

$("output").addEventListener("mouseover", showAlternatives);
$("output").addEventListener("click", showAlternatives); // a tap on a touch screen
$("output").addEventListener("mouseleave", () => ($("tooltip").hidden = true));
$("surprise").addEventListener("change", () => {
  for (const span of $("output").querySelectorAll("span.token")) {
    span.style.background = $("surprise").checked ? surpriseColour(Number(span.dataset.logprob)) : "";
  }
});
$("generate").addEventListener("click", generate);
$("stop-button").addEventListener("click", () => running && running.abort());
loadModels().catch((error) => showError(error.message));

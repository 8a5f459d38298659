// The admin API as the console uses it: the bearer token (sessionStorage, never a cookie),
// JSON calls whose errors carry the API's own words, feature detection from the node's
// OpenAPI document, and the event stream (fetch, so that it can carry the bearer header).

const KEY = "httpdns.token";

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(value) {
  if (value === null) sessionStorage.removeItem(KEY); else sessionStorage.setItem(KEY, value);
}

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** One call; the parsed JSON body, or an ApiError with the API's detail. */
export async function call(method, path, body, extra = {}) {
  const init = { method, headers: headers(extra), credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", `the node did not answer (${err.message})`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, data?.error, data?.detail || `HTTP ${resp.status}`);
  }
  return data;
}

/** What this node offers: the operations of its OpenAPI document and their parameters. */
export async function features() {
  const doc = await call("GET", "/api/v1/openapi.json");
  const ops = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      ops.set(`${method.toUpperCase()} ${path}`, new Set((op.parameters || []).map((p) => p.name)));
    }
  }
  return {
    has: (method, path) => ops.has(`${method} ${path}`),
    param: (method, path, name) => ops.get(`${method} ${path}`)?.has(name) ?? false,
  };
}

/**
 * What the token may change. A POST with no body is refused before anything is written:
 * 400 after the token was admitted, 403 (with the reason) when its role is too small.
 */
export async function probeWrite(path) {
  try {
    await call("POST", path);
    return { ok: true, reason: "" };
  } catch (err) {
    if (err.status === 401 || err.status === 403) return { ok: false, reason: err.message };
    return { ok: true, reason: "" };
  }
}

/**
 * Follow GET /api/v1/events: ``onEvent(type, data, id)`` per event; ``onState(live, text)``
 * when the stream opens or is lost. Reconnects with Last-Event-ID after a second.
 */
export function follow(onEvent, onState) {
  let last = null;
  let stopped = false;
  let controller = null;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (last !== null) h["Last-Event-ID"] = String(last);
        const resp = await fetch("/api/v1/events", {
          headers: h, credentials: "omit", cache: "no-store", signal: controller.signal,
        });
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        onState(true, "Live");
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let type = "message", data = "", id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) type = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) id = Number(line.slice(4));
            }
            if (id !== null) last = id;
            if (data) onEvent(type, JSON.parse(data), id);
          }
        }
        throw new Error("the stream ended");
      } catch (err) {
        if (stopped) return;
        onState(false, `Live updates lost (${err.message}); reconnecting…`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
  run();
  return () => { stopped = true; controller?.abort(); };
}

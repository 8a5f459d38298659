// HTTP DNS client for browsers (fetch) and Node >= 18. An ES module with no dependencies.
//
//   import { HttpDnsClient } from './httpdns.mjs';
//   const dns = new HttpDnsClient({ servers: ['http://203.0.113.10:8053'] });
//   const answer = await dns.resolve('api.example.com');   // null: use normal DNS
//
// Cache with the server's TTL, stale answers served at once while a background refresh
// runs (bounded by maxStale), refresh-ahead at 75 % of the TTL for names in use,
// negative caching, servers tried in order with a failed one backed off, per-request
// timeouts, and `null` when nothing can be had. Times are milliseconds, TTLs seconds.

const DIALECTS = ['d', 'json', 'aliyun'];
const TYPES = { a: 'A', 1: 'A', 4: 'A', aaaa: 'AAAA', 28: 'AAAA', 6: 'AAAA' };
const ALIYUN_BATCH = 5;

/** A server refused the request (HTTP 4xx): a bad name, an unknown account, a bad signature. */
export class RequestRejected extends Error {
  constructor(server, status, code, detail) {
    super(`${server} refused the request (HTTP ${status} ${code}): ${detail}`);
    this.name = 'RequestRejected';
    this.server = server;
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** The server refused the request signature: check the account secret (or the clock). */
export class SignatureError extends RequestRejected {
  constructor(server, status, code, detail, account) {
    super(server, status, code, detail);
    this.name = 'SignatureError';
    this.account = account;
    const hint = code === 'SignatureExpired' ? 'check the device clock' : `check the secret of account ${account}`;
    this.message = `${server} refused the signature of account ${account} (${code}: ${detail}); ${hint}`;
  }
}

/** One server failed (network, timeout, 5xx, unreadable answer); the next one is tried. */
export class ServerError extends Error {
  constructor(server, detail, status = null) {
    super(`${server}: ${detail}`);
    this.name = 'ServerError';
    this.server = server;
    this.status = status;
  }
}

/** Every server failed or is backed off. */
export class NoServerAvailable extends Error {
  constructor(names, type, errors) {
    const why = errors.map((e) => e.message).join('; ') || 'every server is backed off after failures';
    super(`no HTTP DNS server answered for ${names.join(', ')} ${type}: ${why}`);
    this.name = 'NoServerAvailable';
    this.errors = errors;
  }
}

/** 'A' or 'AAAA' from 'a', 1, 4, 'aaaa', 28, 6. */
export function normalizeType(type) {
  const t = TYPES[String(type).trim().toLowerCase()];
  if (!t) throw new TypeError(`record type ${type} is not A or AAAA`);
  return t;
}

/** Lower case, no trailing dot; throws on something that is not a host name. */
export function normalizeName(name) {
  if (typeof name !== 'string') throw new TypeError('name must be a string');
  const n = name.trim().replace(/\.+$/, '').toLowerCase();
  if (n.includes(':')) {
    const six = n.replace(/^\[|\]$/g, '');
    if (isIP(six)) return six;
  }
  if (!n || n.length > 253 || /[\s/?#@:]/.test(n) || n.includes('..') || n.startsWith('.')) {
    throw new TypeError(`${JSON.stringify(name)} is not a host name`);
  }
  return n;
}

function isIP(text) {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(text) || (/^[0-9a-f:.]+$/i.test(text) && text.includes(':'));
}

function parseServer(url) {
  const u = new URL(url.includes('://') ? url : `http://${url}`);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TypeError(`server ${url}: the scheme must be http or https`);
  }
  return { url: `${u.origin}${u.pathname.replace(/\/+$/, '')}`, failures: 0, retryAt: -Infinity };
}

/**
 * The HTTP DNS client.
 *
 * Options: servers (required, tried in order), dialect ('d' | 'json' | 'aliyun'),
 * account and secret (aliyun; a secret signs requests), uid (stickiness key), timeout
 * (ms per request, 2000), lookupTimeout (ms for all servers of one lookup, 5000), backoff
 * and maxBackoff (ms, 1000 and 60000), maxStale (ms past the TTL a stale answer may be
 * served, 300000), negativeTtl (s, 30), refreshAhead (0.75), maxEntries (512), preresolve
 * (names fetched at start), fetch (defaults to globalThis.fetch), now (clock in ms,
 * performance.now), wallClock (Date.now, for signatures), and the hooks onLookup,
 * onRequest and onError, each given one event object.
 */
export class HttpDnsClient {
  constructor(options = {}) {
    const o = options;
    const servers = typeof o.servers === 'string' ? [o.servers] : o.servers;
    if (!Array.isArray(servers) || servers.length === 0) throw new TypeError('servers: at least one server URL');
    this.dialect = o.dialect ?? 'd';
    if (!DIALECTS.includes(this.dialect)) throw new TypeError(`dialect ${this.dialect} is not one of ${DIALECTS.join(', ')}`);
    if (this.dialect === 'aliyun' && !o.account) throw new TypeError('the aliyun dialect needs an account');
    if (o.secret != null && this.dialect !== 'aliyun') throw new TypeError('signed requests need the aliyun dialect');
    this.account = o.account == null ? null : String(o.account);
    this.secret = o.secret ?? null;
    this.uid = o.uid ?? null;
    this.timeout = o.timeout ?? 2000;
    this.lookupTimeout = o.lookupTimeout ?? 5000;
    this.backoff = o.backoff ?? 1000;
    this.maxBackoff = o.maxBackoff ?? 60000;
    this.maxStale = o.maxStale ?? 300000;
    this.negativeTtl = o.negativeTtl ?? 30;
    this.refreshAhead = o.refreshAhead ?? 0.75;
    this.maxEntries = o.maxEntries ?? 512;
    this.signLifetime = o.signLifetime ?? 300;
    this.now = o.now ?? (() => performance.now());
    this.wallClock = o.wallClock ?? (() => Date.now());
    this.onLookup = o.onLookup ?? null;
    this.onRequest = o.onRequest ?? null;
    this.onError = o.onError ?? null;
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch: pass options.fetch');
    this._fetch = (url, init) => f(url, init); // unbound window.fetch throws "Illegal invocation"
    this._servers = servers.map(parseServer);
    this._cache = new Map(); // "name|type" -> entry
    this._inflight = new Map(); // "name|type" -> Promise<answer>
    this.ready = o.preresolve?.length ? this.prefetch(o.preresolve) : Promise.resolve(0);
  }

  /**
   * The answer for `name` ('A' or 'AAAA'): {name, type, addresses, ttl, source, expiresAt,
   * server}, source being 'cache', 'stale' or 'server'; or null when nothing can be had
   * or the service does not know the name (use normal DNS then). Rejects only with
   * RequestRejected/SignatureError (the request itself is wrong) or a TypeError.
   */
  async resolve(name, type = 'A') {
    const started = performance.now();
    let answer = null;
    let error = null;
    let n;
    let t;
    try {
      n = normalizeName(name);
      t = normalizeType(type);
      answer = await this._lookup(n, t);
    } catch (e) {
      error = e;
    }
    this._emit(this.onLookup, {
      name: n ?? name, type: t ?? type, source: answer?.source ?? null,
      addresses: answer?.addresses.length ?? 0, latency: performance.now() - started, error,
    });
    if (error) throw error;
    return answer && answer.addresses.length ? answer : null;
  }

  /** The cached answer ('cache' or 'stale') without a request or side effect; null if none. */
  peek(name, type = 'A') {
    const e = this._cache.get(`${normalizeName(name)}|${normalizeType(type)}`);
    if (!e || !e.answer.addresses.length) return null;
    const now = this.now();
    if (now < e.expiresAt) return { ...e.answer, source: 'cache' };
    if (now < e.staleUntil) return { ...e.answer, source: 'stale' };
    return null;
  }

  /** Resolve several names (batches of five with the aliyun dialect); {name as given: answer|null}. */
  async resolveMany(names, type = 'A') {
    const t = normalizeType(type);
    const wanted = names.map((n) => [n, normalizeName(n)]);
    const found = new Map();
    const missing = [];
    for (const n of new Set(wanted.map((w) => w[1]))) {
      const a = this._literal(n, t) ?? this._fromCache(n, t);
      if (a) found.set(n, a);
      else missing.push(n);
    }
    if (missing.length) {
      const { answers, failures } = await this._fetchNames(t, missing, false);
      for (const [n, a] of answers) found.set(n, a);
      for (const f of failures) this._emit(this.onError, { stage: 'lookup', names: f.names, type: t, error: f.error });
    }
    const out = {};
    for (const [given, n] of wanted) {
      const a = found.get(n);
      out[given] = a && a.addresses.length ? a : null;
    }
    return out;
  }

  /** Fetch names that are not freshly cached; resolves to how many were fetched. */
  async prefetch(names, types = ['A']) {
    let fetched = 0;
    for (const type of types) {
      const t = normalizeType(type);
      const now = this.now();
      const todo = [...new Set(names.map(normalizeName))].filter((n) => {
        const e = this._cache.get(`${n}|${t}`);
        return !e || now >= e.expiresAt;
      });
      if (!todo.length) continue;
      try {
        const { answers, failures } = await this._fetchNames(t, todo, true);
        fetched += answers.size;
        for (const f of failures) this._emit(this.onError, { stage: 'prefetch', names: f.names, type: t, error: f.error });
      } catch (error) {
        this._emit(this.onError, { stage: 'prefetch', names: todo, type: t, error });
      }
    }
    return fetched;
  }

  /** Each server's consecutive failures and ms left in its backoff. */
  serverStates() {
    const now = this.now();
    return this._servers.map((s) => ({ url: s.url, failures: s.failures, retryIn: Math.max(0, s.retryAt - now) }));
  }

  /** Forget every cached answer. */
  clear() {
    this._cache.clear();
  }

  /**
   * Forget the cached answer of `name` (both types unless `type`), e.g. after the app
   * failed to connect to every address: the next lookup asks the servers.
   */
  invalidate(name, type = null) {
    const n = normalizeName(name);
    const types = type == null ? ['A', 'AAAA'] : [normalizeType(type)];
    return types.map((t) => this._cache.delete(`${n}|${t}`)).some(Boolean);
  }

  // -- lookups ------------------------------------------------------------------------------

  _fromCache(n, t) {
    const e = this._cache.get(`${n}|${t}`);
    if (!e) return null;
    const now = this.now();
    let source;
    if (now < e.expiresAt) source = 'cache';
    else if (now < e.staleUntil) source = 'stale';
    else return null;
    e.used = true;
    if (now >= e.refreshAt) this._refresh(n, t, e);
    return { ...e.answer, source };
  }

  _literal(n, t) {
    if (!isIP(n)) return null;
    // an IP literal answers itself, with no request
    const same = n.includes(':') === (t === 'AAAA');
    return { name: n, type: t, addresses: same ? [n] : [], ttl: 0, source: 'system', expiresAt: 0, server: null };
  }

  async _lookup(n, t) {
    const literal = this._literal(n, t);
    if (literal) return literal;
    const cached = this._fromCache(n, t);
    if (cached) return cached;
    try {
      return await this._fetchOne(n, t, false);
    } catch (error) {
      if (error instanceof NoServerAvailable) {
        this._emit(this.onError, { stage: 'lookup', names: [n], type: t, error });
        return null;
      }
      throw error;
    }
  }

  _fetchOne(n, t, background) {
    const key = `${n}|${t}`;
    let p = this._inflight.get(key);
    if (!p) {
      p = this._fetchNames(t, [n], background).then(({ answers, failures }) => {
        if (failures.length) throw failures[0].error;
        return answers.get(n);
      });
      const done = () => this._inflight.delete(key);
      p.then(done, done);
      this._inflight.set(key, p);
    }
    return p;
  }

  _refresh(n, t, entry) {
    if (entry.refreshing) return;
    entry.refreshing = true;
    entry.refreshAt = Infinity;
    this._fetchOne(n, t, true).catch((error) => {
      entry.refreshing = false;
      entry.refreshAt = this.now() + this.backoff;
      this._emit(this.onError, { stage: 'refresh', names: [n], type: t, error });
    });
  }

  async _fetchNames(t, names, background) {
    const requests = this._requests(t, names);
    const answers = new Map();
    const failures = [];
    await Promise.all(requests.map(async (req) => {
      try {
        const { records, server } = await this._walk(req, background);
        for (const [n, rec] of records) answers.set(n, this._store(n, t, rec, server));
      } catch (error) {
        if (!(error instanceof NoServerAvailable)) throw error;
        failures.push({ names: req.names, error });
      }
    }));
    return { answers, failures };
  }

  async _walk(req, background) {
    const errors = [];
    const deadline = performance.now() + this.lookupTimeout;
    const now = this.now();
    for (const server of this._servers.filter((s) => s.retryAt <= now)) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        errors.push(new ServerError(server.url, 'not tried: lookupTimeout reached'));
        break;
      }
      const started = performance.now();
      let status = null;
      try {
        const res = await this._get(server.url + req.path, Math.min(this.timeout, remaining));
        status = res.status;
        const records = this._parse(req, res.status, res.body, server.url);
        server.failures = 0;
        server.retryAt = -Infinity;
        this._emitRequest(server, req, started, status, null, background);
        return { records, server: server.url };
      } catch (error) {
        this._emitRequest(server, req, started, status, error, background);
        if (error instanceof RequestRejected) throw error;
        server.failures += 1;
        server.retryAt = this.now() + Math.min(this.maxBackoff, this.backoff * 2 ** (server.failures - 1));
        errors.push(error instanceof ServerError ? error : new ServerError(server.url, describe(error)));
      }
    }
    throw new NoServerAvailable(req.names, req.type, errors);
  }

  async _get(url, timeout) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    try {
      const res = await this._fetch(url, { signal: controller.signal, credentials: 'omit', redirect: 'error' });
      const body = await res.text();
      return { status: res.status, body };
    } catch (e) {
      if (controller.signal.aborted) throw new Error(`no answer within ${timeout} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  _store(n, t, rec, server) {
    const now = this.now();
    const ttlMs = rec.ttl * 1000;
    const positive = rec.addresses.length > 0;
    const answer = Object.freeze({
      name: n, type: t, addresses: Object.freeze(rec.addresses), ttl: rec.ttl,
      source: 'server', expiresAt: now + ttlMs, server,
    });
    const key = `${n}|${t}`;
    if (!this._cache.has(key) && this._cache.size >= this.maxEntries) this._evict(now);
    this._cache.set(key, {
      answer,
      expiresAt: now + ttlMs,
      staleUntil: positive ? now + ttlMs + this.maxStale : now + ttlMs,
      refreshAt: positive ? now + ttlMs * this.refreshAhead : Infinity,
      used: false,
      refreshing: false,
    });
    return answer;
  }

  _evict(now) {
    let victim = null;
    for (const [k, e] of this._cache) {
      if (now >= e.staleUntil) {
        this._cache.delete(k);
        return;
      }
      if (!victim || e.staleUntil < victim[1].staleUntil) victim = [k, e];
    }
    if (victim) this._cache.delete(victim[0]);
  }

  // -- dialects -----------------------------------------------------------------------------

  _requests(t, names) {
    if (this.dialect === 'aliyun' && names.length > 1) {
      const out = [];
      for (let i = 0; i < names.length; i += ALIYUN_BATCH) out.push(this._aliyun(t, names.slice(i, i + ALIYUN_BATCH), 'resolve'));
      return out;
    }
    return names.map((n) => {
      if (this.dialect === 'd') return this._req(`/d?dn=${encodeURIComponent(n)}&type=${t === 'A' ? 'a' : 'aaaa'}&ttl=1`, t, [n]);
      if (this.dialect === 'json') return this._req(`/resolve?name=${encodeURIComponent(n)}&type=${t}`, t, [n]);
      return this._aliyun(t, [n], 'd');
    });
  }

  _aliyun(t, names, op) {
    const host = names.join(',');
    let params = `host=${names.map(encodeURIComponent).join(',')}&query=${t === 'A' ? '4' : '6'}`;
    if (this.secret != null) {
      const expiry = Math.floor(this.wallClock() / 1000 + this.signLifetime);
      params += `&t=${expiry}&s=${md5(`${host}-${this.secret}-${expiry}`)}`;
      op = `sign_${op}`;
    }
    return this._req(`/${encodeURIComponent(this.account)}/${op}?${params}`, t, names);
  }

  _req(path, type, names) {
    return { path: this.uid == null ? path : `${path}&uid=${encodeURIComponent(this.uid)}`, type, names };
  }

  _parse(req, status, body, server) {
    if (status !== 200) throw this._httpError(status, body, server);
    try {
      if (this.dialect === 'd') return new Map([[req.names[0], this._parseD(body)]]);
      if (this.dialect === 'json') return new Map([[req.names[0], this._parseJson(req.type, body)]]);
      return this._parseAliyun(req, body);
    } catch (e) {
      throw new ServerError(server, `unreadable answer: ${e.message}`, status);
    }
  }

  _parseD(body) {
    let text = body.trim();
    if (!text) return { addresses: [], ttl: this.negativeTtl };
    text = text.split('|')[0];
    const comma = text.lastIndexOf(',');
    const ips = comma < 0 ? text : text.slice(0, comma);
    const ttl = comma < 0 ? this.negativeTtl : Number(text.slice(comma + 1));
    if (!Number.isFinite(ttl)) throw new Error(`bad TTL in ${JSON.stringify(body)}`);
    return { addresses: checked(ips.split(/[;-]/).filter(Boolean)), ttl };
  }

  _parseJson(t, body) {
    const data = JSON.parse(body);
    if (data.Status === 2) throw new Error('the server answered SERVFAIL');
    const code = t === 'A' ? 1 : 28;
    const answers = (data.Answer ?? []).filter((a) => a.type === code);
    if (data.Status === 0 && answers.length) {
      return { addresses: checked(answers.map((a) => String(a.data))), ttl: Math.min(...answers.map((a) => a.TTL)) };
    }
    let ttl = this.negativeTtl;
    for (const soa of data.Authority ?? []) {
      if (soa.type === 6) ttl = Math.min(soa.TTL ?? ttl, Number(String(soa.data).split(/\s+/).pop()) || ttl);
    }
    return { addresses: [], ttl };
  }

  _parseAliyun(req, body) {
    const data = JSON.parse(body);
    const items = Array.isArray(data?.dns) ? data.dns : [data];
    const field = req.type === 'A' ? 'ips' : 'ipsv6';
    const rec = (item) => ({ addresses: checked((item[field] ?? []).map(String)), ttl: Number(item.ttl ?? this.negativeTtl) });
    if (items.length === 1 && req.names.length === 1) return new Map([[req.names[0], rec(items[0])]]);
    const byHost = new Map(items.map((i) => [String(i.host).toLowerCase().replace(/\.$/, ''), i]));
    return new Map(req.names.map((n) => {
      if (!byHost.has(n)) throw new Error(`no answer for ${n}`);
      return [n, rec(byHost.get(n))];
    }));
  }

  _httpError(status, body, server) {
    let code = `http_${status}`;
    let detail = '';
    try {
      const data = JSON.parse(body);
      code = String(data.code ?? data.error ?? code);
      detail = String(data.detail ?? '');
    } catch {
      detail = String(body).slice(0, 200);
    }
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      if (status === 403 && (code === 'InvalidSignature' || code === 'SignatureExpired')) {
        return new SignatureError(server, status, code, detail, this.account ?? '');
      }
      return new RequestRejected(server, status, code, detail);
    }
    return new ServerError(server, `HTTP ${status} ${code} ${detail}`.trim(), status);
  }

  // -- hooks --------------------------------------------------------------------------------

  _emitRequest(server, req, started, status, error, background) {
    this._emit(this.onRequest, {
      server: server.url, names: req.names, type: req.type, latency: performance.now() - started,
      status, error, background,
    });
  }

  _emit(hook, event) {
    if (!hook) return;
    try {
      hook(event);
    } catch {
      // a metrics hook must never break name resolution
    }
  }
}

function describe(error) {
  const cause = error?.cause;
  const why = cause ? `: ${cause.code ?? cause.message ?? cause}` : '';
  return `${error?.message ?? error}${why}`;
}

function checked(addresses) {
  for (const a of addresses) if (!isIP(a)) throw new Error(`${JSON.stringify(a)} is not an IP address`);
  return [...new Set(addresses)];
}

// -- MD5 (RFC 1321), for the aliyun signature: browsers' WebCrypto has no MD5 -------------------

const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

/** Hex MD5 of a string (UTF-8). */
export function md5(text) {
  const bytes = new TextEncoder().encode(text);
  const len = ((bytes.length + 8) >>> 6) + 1;
  const words = new Uint32Array(len * 16);
  for (let i = 0; i < bytes.length; i++) words[i >> 2] |= bytes[i] << ((i % 4) * 8);
  words[bytes.length >> 2] |= 0x80 << ((bytes.length % 4) * 8);
  words[len * 16 - 2] = (bytes.length * 8) >>> 0;
  words[len * 16 - 1] = Math.floor(bytes.length / 0x20000000);
  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  for (let off = 0; off < words.length; off += 16) {
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      const r = i >> 4;
      if (r === 0) { f = (b & c) | (~b & d); g = i; }
      else if (r === 1) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
      else if (r === 2) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
      else { f = c ^ (b | ~d); g = (7 * i) % 16; }
      const tmp = d;
      d = c;
      c = b;
      const sum = (a + f + K[i] + words[off + g]) >>> 0;
      const s = S[r * 4 + (i % 4)];
      b = (b + ((sum << s) | (sum >>> (32 - s)))) >>> 0;
      a = tmp;
    }
    a0 = (a0 + a) >>> 0;
    b0 = (b0 + b) >>> 0;
    c0 = (c0 + c) >>> 0;
    d0 = (d0 + d) >>> 0;
  }
  let hex = '';
  for (const v of [a0, b0, c0, d0]) {
    for (let i = 0; i < 4; i++) hex += ((v >>> (i * 8)) & 0xff).toString(16).padStart(2, '0');
  }
  return hex;
}

export default HttpDnsClient;

// HTTP DNS client for browsers (fetch) and Node >= 18. An ES module with no dependencies.
//
//   import { HttpDnsClient } from './httpdns.mjs';
//   const dns = new HttpDnsClient({ servers: ['http://203.0.113.10:8053'] });
//   const answer = await dns.resolve('api.example.com');   // null: use normal DNS
//
// Cache with the server's TTL, stale answers served at once while a background refresh
// runs (bounded by maxStale), refresh-ahead at 75 % of the TTL for names in use,
// negative caching, servers tried in order with a failed one backed off, per-request
// timeouts, and `null` when nothing can be had (or the `fallback` hook's answer).
// Also: DNSPod's encrypted dialect (DES, AES), dual-stack lookups (resolveBoth), a cache
// that survives restarts (localStorage or a callback store), networkChanged(), and SPKI
// pinning under Node. Times are milliseconds, TTLs and serverStates().retryIn seconds.

const DIALECTS = ['d', 'json', 'aliyun'];
const TYPES = { a: 'A', 1: 'A', 4: 'A', aaaa: 'AAAA', 28: 'AAAA', 6: 'AAAA' };
const ALIYUN_BATCH = 5;
const STORAGE_KEY = 'httpdns-cache';
const STORE_FORMAT = 1;
const PERSIST_INTERVAL = 1000; // ms between two saves of the persistent cache

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

/** The server's certificate key is not one of the pinned keys (Node, `pins`). */
export class PinMismatch extends Error {
  constructor(server, pin) {
    super(`${server}: the certificate key ${pin} is not pinned`);
    this.name = 'PinMismatch';
    this.server = server;
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
 * performance.now), wallClock (Date.now, for signatures and the persistent cache), and the
 * hooks onLookup, onRequest and onError, each given one event object.
 * DNSPod encrypted dialect: dnspodId, dnspodKey, encryption ('des' | 'aes'; dialect 'd').
 * Persistent cache: cacheStore (localStorage or {load(), save(records)}), maxAge (ms an
 * answer may be served after it was fetched, 86400000). fallback: async (name, type) =>
 * addresses | null, asked when nothing else answers. pins: ['sha256/BASE64'] (Node only).
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
    this.dnspodId = o.dnspodId == null ? null : String(o.dnspodId);
    this.encryption = o.encryption ?? 'des';
    this._cipher = null;
    if (this.dnspodId != null || o.dnspodKey != null) {
      if (this.dialect !== 'd' || this.dnspodId == null || o.dnspodKey == null) {
        throw new TypeError("the DNSPod encrypted dialect needs dialect 'd', dnspodId and dnspodKey");
      }
      if (!/^[a-z0-9]+$/i.test(this.dnspodId)) throw new TypeError('dnspodId: letters and digits');
      this._cipher = new DnspodCipher(this.encryption, o.dnspodKey);
    }
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
    this.fallback = o.fallback ?? null;
    if (this.fallback != null && typeof this.fallback !== 'function') throw new TypeError('fallback: a function (name, type) => addresses');
    this.maxAge = o.maxAge ?? 86_400_000;
    if (!(this.maxAge > 0)) throw new TypeError('maxAge: > 0 ms');
    this._pins = normalizePins(o.pins ?? []);
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch: pass options.fetch');
    this._fetch = (url, init) => f(url, init); // unbound window.fetch throws "Illegal invocation"
    this._servers = servers.map(parseServer);
    if (this._pins.size) {
      if (!globalThis.process?.versions?.node) throw new TypeError('pins: only under Node (a browser checks certificates itself)');
      if (this._servers.some((srv) => !srv.url.startsWith('https:'))) throw new TypeError('pins need https servers only');
    }
    this._cache = new Map(); // "name|type" -> entry
    this._inflight = new Map(); // "name|type" -> Promise<answer>
    this._cacheStore = o.cacheStore == null ? null : storeOf(o.cacheStore);
    this._savedAt = -Infinity;
    this._saveTimer = null;
    this._restoring = this._cacheStore ? this._restore() : null; // a Promise only for async stores
    const restored = this._restoring ?? Promise.resolve();
    this.ready = o.preresolve?.length ? restored.then(() => this.prefetch(o.preresolve)) : restored.then(() => 0);
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
      if (this._restoring) await this._restoring;
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

  /**
   * The A and AAAA answers of `name` in one request where the dialect has one ('d':
   * type=addrs, plain or encrypted; 'aliyun': query=4,6; 'json' asks twice), from the cache
   * when both are there: {name, ipv4, ipv6 (answers or null), prefer, addresses (the
   * preferred family first), source, ttl}, or null when neither family has an address.
   */
  async resolveBoth(name, prefer = 'ipv4') {
    if (prefer !== 'ipv4' && prefer !== 'ipv6') throw new TypeError(`prefer ${prefer} is not ipv4 or ipv6`);
    const n = normalizeName(name);
    if (this._restoring) await this._restoring;
    let a4 = this._literal(n, 'A');
    let a6 = this._literal(n, 'AAAA');
    if (!a4 || !a6) {
      a4 = this._fromCache(n, 'A');
      a6 = this._fromCache(n, 'AAAA');
    }
    if (!a4 || !a6) {
      if (this.dialect === 'json') {
        [a4, a6] = await Promise.all([a4 ?? this._lookup(n, 'A'), a6 ?? this._lookup(n, 'AAAA')]);
      } else {
        try {
          const req = await this._bothRequest(n);
          const { records, server } = await this._walk(req, false, (r, st, b, srv) => this._parseBoth(r, st, b, srv));
          a4 = this._storeAnswer(n, 'A', records.A, server, true);
          a6 = this._storeAnswer(n, 'AAAA', records.AAAA, server, true);
        } catch (error) {
          if (!(error instanceof NoServerAvailable)) throw error;
          this._emit(this.onError, { stage: 'lookup', names: [n], type: 'A+AAAA', error });
          a4 = a4 ?? await this._fallbackAnswer(n, 'A');
          a6 = a6 ?? await this._fallbackAnswer(n, 'AAAA');
        }
      }
    }
    const v4 = a4?.addresses.length ? a4 : null;
    const v6 = a6?.addresses.length ? a6 : null;
    if (!v4 && !v6) return null;
    const [main, other] = prefer === 'ipv6' ? [v6, v4] : [v4, v6];
    return {
      name: n, ipv4: v4, ipv6: v6, prefer,
      addresses: [...(main?.addresses ?? []), ...(other?.addresses ?? [])],
      source: (main ?? other).source,
      ttl: Math.min(...[v4, v6].filter(Boolean).map((a) => a.ttl)),
    };
  }

  /**
   * The device changed network: answers steered for the old one may be wrong now. Every
   * cached answer becomes stale at once (served while a refresh runs, within maxStale),
   * negative answers are dropped, server backoffs are forgotten, and the names in use are
   * re-resolved in the background. Returns how many. Wire it to `online` and
   * `navigator.connection`'s `change` events (see the README).
   */
  networkChanged() {
    const now = this.now();
    for (const srv of this._servers) {
      srv.failures = 0;
      srv.retryAt = -Infinity;
    }
    let hot = 0;
    for (const [key, e] of [...this._cache]) {
      if (!e.answer.addresses.length) {
        this._cache.delete(key);
        continue;
      }
      e.expiresAt = Math.min(e.expiresAt, now);
      if (!e.refreshing) e.refreshAt = now;
      if (e.used || e.hot) {
        hot += 1;
        this._refresh(e.answer.name, e.answer.type, e);
      }
    }
    return hot;
  }

  /** Save the cache to cacheStore now (done at most once a second after answers arrive). */
  persist() {
    if (!this._cacheStore) return false;
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    this._savedAt = this.now();
    const now = this.now();
    const wall = this.wallClock();
    const records = [];
    for (const e of this._cache.values()) {
      const a = e.answer;
      if (!a.addresses.length || now >= e.staleUntil) continue;
      records.push({
        name: a.name, type: a.type, addresses: [...a.addresses], ttl: a.ttl,
        fetched: Math.round(wall - (now - e.fetchedAt)) / 1000, server: a.server,
      });
    }
    try {
      const done = this._cacheStore.save(records);
      if (done && typeof done.catch === 'function') done.catch((error) => this._emit(this.onError, { stage: 'persist', names: [], type: null, error }));
    } catch (error) {
      this._emit(this.onError, { stage: 'persist', names: [], type: null, error });
      return false;
    }
    return true;
  }

  /** Resolve several names (batches of five with the aliyun dialect); {name as given: answer|null}. */
  async resolveMany(names, type = 'A') {
    const t = normalizeType(type);
    if (this._restoring) await this._restoring;
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
      for (const f of failures) {
        this._emit(this.onError, { stage: 'lookup', names: f.names, type: t, error: f.error });
        for (const n of f.names) found.set(n, await this._fallbackAnswer(n, t));
      }
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

  /** Each server's consecutive failures and seconds left in its backoff (as in Python). */
  serverStates() {
    const now = this.now();
    return this._servers.map((s) => ({ url: s.url, failures: s.failures, retryIn: Math.max(0, s.retryAt - now) / 1000 }));
  }

  /** Forget every cached answer (in the persistent cache too, when there is one). */
  clear() {
    this._cache.clear();
    this.persist();
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
        return this._fallbackAnswer(n, t);
      }
      throw error;
    }
  }

  /** The fallback hook's answer (source 'system', not cached), or null. */
  async _fallbackAnswer(n, t) {
    if (!this.fallback) return null;
    try {
      const found = await this.fallback(n, t);
      if (!found?.length) return null;
      return { name: n, type: t, addresses: checked(found.map(String)), ttl: 0, source: 'system', expiresAt: 0, server: null };
    } catch (error) {
      this._emit(this.onError, { stage: 'system', names: [n], type: t, error });
      return null;
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
    const requests = await Promise.all(this._requests(t, names));
    const answers = new Map();
    const failures = [];
    await Promise.all(requests.map(async (req) => {
      try {
        const { records, server } = await this._walk(req, background);
        for (const [n, rec] of records) answers.set(n, this._storeAnswer(n, t, rec, server, !background));
      } catch (error) {
        if (!(error instanceof NoServerAvailable)) throw error;
        failures.push({ names: req.names, error });
      }
    }));
    return { answers, failures };
  }

  async _walk(req, background, parse = (r, st, b, srv) => this._parse(r, st, b, srv)) {
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
        const records = await parse(req, res.status, res.body, server.url);
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
    if (this._pins.size) return this._pinnedGet(url, timeout);
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

  _storeAnswer(n, t, rec, server, hot = false) {
    const now = this.now();
    const ttlMs = rec.ttl * 1000;
    const positive = rec.addresses.length > 0;
    const expiresAt = now + Math.min(ttlMs, this.maxAge); // never served past maxAge
    const answer = Object.freeze({
      name: n, type: t, addresses: Object.freeze(rec.addresses), ttl: rec.ttl,
      source: 'server', expiresAt, server,
    });
    const key = `${n}|${t}`;
    const old = this._cache.get(key);
    if (!old && this._cache.size >= this.maxEntries) this._evict(now);
    this._cache.set(key, {
      answer,
      fetchedAt: now,
      expiresAt,
      staleUntil: positive ? Math.min(expiresAt + this.maxStale, now + this.maxAge) : expiresAt,
      refreshAt: positive ? now + ttlMs * this.refreshAhead : Infinity,
      used: false,
      hot: hot || Boolean(old?.hot || old?.used), // asked for by the app: networkChanged re-resolves it
      refreshing: false,
    });
    this._persistSoon();
    return answer;
  }

  _persistSoon() {
    if (!this._cacheStore || this._saveTimer) return;
    const wait = this._savedAt + PERSIST_INTERVAL - this.now();
    if (wait <= 0) {
      this.persist();
      return;
    }
    this._saveTimer = setTimeout(() => this.persist(), Math.min(wait, PERSIST_INTERVAL));
    this._saveTimer?.unref?.(); // a pending save does not keep Node running
  }

  /** Put back persisted answers: fresh for the rest of their TTL, then stale until maxAge. */
  _restore() {
    const apply = (records) => {
      this._restoring = null;
      const now = this.now();
      const wall = this.wallClock();
      for (const r of Array.isArray(records) ? records : []) {
        try {
          const n = normalizeName(String(r.name));
          const t = normalizeType(r.type);
          const addresses = checked(r.addresses.map(String));
          const ttl = Number(r.ttl);
          const age = wall - Number(r.fetched) * 1000;
          if (!addresses.length || !(age >= 0) || !(ttl >= 0) || this._cache.has(`${n}|${t}`)) continue;
          const fetchedAt = now - age;
          const limit = fetchedAt + this.maxAge;
          if (now >= limit) continue;
          const expiresAt = Math.min(fetchedAt + ttl * 1000, limit);
          this._cache.set(`${n}|${t}`, {
            answer: Object.freeze({ name: n, type: t, addresses: Object.freeze(addresses), ttl, source: 'server', expiresAt, server: r.server ?? null }),
            fetchedAt, expiresAt, staleUntil: limit,
            refreshAt: Math.min(fetchedAt + ttl * 1000 * this.refreshAhead, expiresAt),
            used: false, hot: false, refreshing: false,
          });
        } catch {
          // a malformed record is skipped
        }
      }
    };
    const fail = (error) => {
      this._restoring = null;
      this._emit(this.onError, { stage: 'restore', names: [], type: null, error });
    };
    try {
      const loaded = this._cacheStore.load();
      if (loaded && typeof loaded.then === 'function') return loaded.then(apply, fail);
      apply(loaded);
    } catch (error) {
      fail(error);
    }
    return null;
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
    if (this._cipher) return names.map((n) => this._encryptedReq(n, t === 'A' ? 'a' : 'aaaa', t));
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

  async _encryptedReq(n, kind, t) {
    const alg = this._cipher.encryption === 'aes' ? '&alg=aes' : '';
    return this._req(`/d?dn=${await this._cipher.encryptHex(n)}&id=${this.dnspodId}${alg}&type=${kind}&ttl=1`, t, [n]);
  }

  async _bothRequest(n) {
    if (this._cipher) return this._encryptedReq(n, 'addrs', 'A');
    if (this.dialect === 'd') return this._req(`/d?dn=${encodeURIComponent(n)}&type=addrs&ttl=1`, 'A', [n]);
    const req = this._aliyun('A', [n], 'd');
    return { ...req, path: req.path.replace('&query=4', '&query=4,6') };
  }

  async _parseBoth(req, status, body, server) {
    if (status !== 200) throw this._httpError(status, body, server);
    try {
      if (this.dialect === 'aliyun') {
        const data = JSON.parse(body);
        const ttl = Number(data.ttl ?? this.negativeTtl);
        return { A: { addresses: checked((data.ips ?? []).map(String)), ttl }, AAAA: { addresses: checked((data.ipsv6 ?? []).map(String)), ttl } };
      }
      let text = this._cipher && body.trim() ? await this._cipher.decryptHex(body) : body;
      text = text.trim().split('|')[0];
      if (!text) return { A: { addresses: [], ttl: this.negativeTtl }, AAAA: { addresses: [], ttl: this.negativeTtl } };
      const comma = text.lastIndexOf(',');
      const ips = comma < 0 ? text : text.slice(0, comma);
      const ttl = comma < 0 ? this.negativeTtl : Number(text.slice(comma + 1));
      if (!Number.isFinite(ttl)) throw new Error(`bad TTL in ${JSON.stringify(text)}`);
      const dash = ips.indexOf('-');
      const [v4, v6] = dash < 0 ? [ips, ''] : [ips.slice(0, dash), ips.slice(dash + 1)];
      return { A: { addresses: checked(v4.split(';').filter(Boolean)), ttl }, AAAA: { addresses: checked(v6.split(';').filter(Boolean)), ttl } };
    } catch (e) {
      throw new ServerError(server, `unreadable answer: ${e.message}`, status);
    }
  }

  async _parse(req, status, body, server) {
    if (status !== 200) throw this._httpError(status, body, server);
    try {
      if (this._cipher) {
        const text = body.trim() ? await this._cipher.decryptHex(body) : '';
        return new Map([[req.names[0], this._parseD(text)]]);
      }
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
    if (this._cipher && !String(body).trim() && [400, 403, 404].includes(status)) {
      const hint = {
        400: 'the server could not decrypt the request: check dnspodKey and encryption',
        403: `account ${this.dnspodId} has no ${this.encryption} key on the server`,
        404: `the server does not know dnspodId ${this.dnspodId}`,
      }[status];
      return new RequestRejected(server, status, `http_${status}`, hint);
    }
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      if (status === 403 && (code === 'InvalidSignature' || code === 'SignatureExpired')) {
        return new SignatureError(server, status, code, detail, this.account ?? '');
      }
      return new RequestRejected(server, status, code, detail);
    }
    return new ServerError(server, `HTTP ${status} ${code} ${detail}`.trim(), status);
  }

  /** GET under Node with the certificate key checked against `pins`. */
  async _pinnedGet(url, timeout) {
    const [https, tls, { createHash, X509Certificate }] = await Promise.all([import('node:https'), import('node:tls'), import('node:crypto')]);
    const pins = this._pins;
    return new Promise((resolve, reject) => {
      const req = https.get(url, {
        agent: false,
        timeout,
        checkServerIdentity: (host, cert) => {
          const err = tls.checkServerIdentity(host, cert);
          if (err) return err;
          // cert.pubkey is the bare key for EC certificates: hash the whole SubjectPublicKeyInfo
          const spki = new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
          const pin = `sha256/${createHash('sha256').update(spki).digest('base64')}`;
          return pins.has(pin) ? undefined : new PinMismatch(new URL(url).origin, pin);
        },
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} ms`)));
      req.on('error', reject);
    });
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

/** A persistent-cache store from a Storage (localStorage) or a {load(), save(records)} object. */
function storeOf(store) {
  if (typeof store.getItem === 'function' && typeof store.setItem === 'function') {
    return {
      load: () => {
        const raw = store.getItem(STORAGE_KEY);
        if (!raw) return [];
        const data = JSON.parse(raw);
        return data?.format === STORE_FORMAT && Array.isArray(data.answers) ? data.answers : [];
      },
      save: (answers) => store.setItem(STORAGE_KEY, JSON.stringify({ format: STORE_FORMAT, answers })),
    };
  }
  if (typeof store.load === 'function' && typeof store.save === 'function') return store;
  throw new TypeError('cacheStore: localStorage (getItem/setItem) or an object with load() and save(records)');
}

/** 'sha256/BASE64' pins (a bare BASE64 digest is accepted), as a Set. */
function normalizePins(pins) {
  const out = new Set();
  for (const pin of pins) {
    const digest = String(pin).trim().replace(/^sha256\//, '');
    let raw = '';
    try {
      raw = atob(digest);
    } catch {
      // reported below
    }
    if (raw.length !== 32) throw new TypeError(`pin ${pin} is not sha256/BASE64 of a SHA-256 digest`);
    out.add(`sha256/${btoa(raw)}`);
  }
  return out;
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(text) {
  const t = String(text).trim();
  if (t.length % 2 || !/^[0-9a-f]*$/i.test(t)) throw new Error('not hex');
  const out = new Uint8Array(t.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * DNSPod's encryption of one account key: 'des' (DES-ECB, PKCS#5, the key's first 8 bytes)
 * or 'aes' (AES-CBC through WebCrypto, PKCS#7, a random 16-byte IV before the ciphertext).
 * encryptHex(text) and decryptHex(hex) return promises.
 */
export class DnspodCipher {
  constructor(encryption, key) {
    const raw = typeof key === 'string' ? new TextEncoder().encode(key) : new Uint8Array(key);
    this.encryption = encryption;
    if (encryption === 'des') {
      if (raw.length < 8) throw new TypeError('a DES key has at least 8 bytes (the first 8 are used)');
      this._keys = desSubkeys(raw.slice(0, 8));
    } else if (encryption === 'aes') {
      if (![16, 24, 32].includes(raw.length)) throw new TypeError('an AES key has 16, 24 or 32 bytes');
      if (!globalThis.crypto?.subtle) throw new TypeError('AES needs WebCrypto (a secure context in browsers)');
      this._aes = globalThis.crypto.subtle.importKey('raw', raw, { name: 'AES-CBC' }, false, ['encrypt', 'decrypt']);
    } else {
      throw new TypeError(`encryption ${encryption} is not des or aes`);
    }
  }

  async encryptHex(text) {
    const data = new TextEncoder().encode(text);
    if (this.encryption === 'des') {
      const n = 8 - (data.length % 8);
      const padded = new Uint8Array(data.length + n).fill(n);
      padded.set(data);
      return toHex(desEcb(padded, this._keys));
    }
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(16));
    const sealed = new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: 'AES-CBC', iv }, await this._aes, data));
    return toHex(iv) + toHex(sealed);
  }

  async decryptHex(hex) {
    const data = fromHex(hex);
    let plain;
    if (this.encryption === 'des') {
      if (!data.length || data.length % 8) throw new Error('not whole DES blocks');
      const out = desEcb(data, [...this._keys].reverse());
      const n = out[out.length - 1];
      if (n < 1 || n > 8 || out.slice(-n).some((b) => b !== n)) throw new Error('bad padding (or a wrong key)');
      plain = out.slice(0, -n);
    } else {
      if (data.length < 32 || data.length % 16) throw new Error('not an IV and whole AES blocks');
      try {
        plain = await globalThis.crypto.subtle.decrypt({ name: 'AES-CBC', iv: data.slice(0, 16) }, await this._aes, data.slice(16));
      } catch {
        throw new Error('bad padding (or a wrong key)');
      }
    }
    return new TextDecoder('ascii', { fatal: true }).decode(plain);
  }
}

// -- DES (FIPS 46-3), for DNSPod's DES mode: WebCrypto has no DES --------------------------------
// Bit-per-element arrays: slow but small and plain; a request encrypts a few blocks.

const DES_IP = [58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
  64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61, 53, 45, 37,
  29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7];
const DES_FP = [40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
  37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27, 34, 2, 42, 10,
  50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25];
const DES_E = [32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, 16, 17, 18,
  19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1];
const DES_P = [16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
  13, 30, 6, 22, 11, 4, 25];
const DES_PC1 = [57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3,
  60, 52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29, 21, 13, 5,
  28, 20, 12, 4];
const DES_PC2 = [14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41,
  52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32];
const DES_SHIFTS = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];
const DES_S = [
  '14 4 13 1 2 15 11 8 3 10 6 12 5 9 0 7 0 15 7 4 14 2 13 1 10 6 12 11 9 5 3 8 4 1 14 8 13 6 2 11 15 12 9 7 3 10 5 0 15 12 8 2 4 9 1 7 5 11 3 14 10 0 6 13',
  '15 1 8 14 6 11 3 4 9 7 2 13 12 0 5 10 3 13 4 7 15 2 8 14 12 0 1 10 6 9 11 5 0 14 7 11 10 4 13 1 5 8 12 6 9 3 2 15 13 8 10 1 3 15 4 2 11 6 7 12 0 5 14 9',
  '10 0 9 14 6 3 15 5 1 13 12 7 11 4 2 8 13 7 0 9 3 4 6 10 2 8 5 14 12 11 15 1 13 6 4 9 8 15 3 0 11 1 2 12 5 10 14 7 1 10 13 0 6 9 8 7 4 15 14 3 11 5 2 12',
  '7 13 14 3 0 6 9 10 1 2 8 5 11 12 4 15 13 8 11 5 6 15 0 3 4 7 2 12 1 10 14 9 10 6 9 0 12 11 7 13 15 1 3 14 5 2 8 4 3 15 0 6 10 1 13 8 9 4 5 11 12 7 2 14',
  '2 12 4 1 7 10 11 6 8 5 3 15 13 0 14 9 14 11 2 12 4 7 13 1 5 0 15 10 3 9 8 6 4 2 1 11 10 13 7 8 15 9 12 5 6 3 0 14 11 8 12 7 1 14 2 13 6 15 0 9 10 4 5 3',
  '12 1 10 15 9 2 6 8 0 13 3 4 14 7 5 11 10 15 4 2 7 12 9 5 6 1 13 14 0 11 3 8 9 14 15 5 2 8 12 3 7 0 4 10 1 13 11 6 4 3 2 12 9 5 15 10 11 14 1 7 6 0 8 13',
  '4 11 2 14 15 0 8 13 3 12 9 7 5 10 6 1 13 0 11 7 4 9 1 10 14 3 5 12 2 15 8 6 1 4 11 13 12 3 7 14 10 15 6 8 0 5 9 2 6 11 13 8 1 4 10 7 9 5 0 15 14 2 3 12',
  '13 2 8 4 6 15 11 1 10 9 3 14 5 0 12 7 1 15 13 8 10 3 7 4 12 5 6 11 0 14 9 2 7 11 4 1 9 12 14 2 0 6 10 13 15 3 5 8 2 1 14 7 4 10 8 13 15 12 9 0 3 5 6 11',
].map((row) => row.split(' ').map(Number));

function desBits(bytes) {
  const out = [];
  for (const b of bytes) for (let i = 7; i >= 0; i--) out.push((b >> i) & 1);
  return out;
}

function desPermute(bits, table) {
  return table.map((i) => bits[i - 1]);
}

function desSubkeys(key) {
  const k = desPermute(desBits(key), DES_PC1);
  let c = k.slice(0, 28);
  let d = k.slice(28);
  return DES_SHIFTS.map((s) => {
    c = c.slice(s).concat(c.slice(0, s));
    d = d.slice(s).concat(d.slice(0, s));
    return desPermute(c.concat(d), DES_PC2);
  });
}

function desBlock(block, subkeys) {
  const b = desPermute(desBits(block), DES_IP);
  let l = b.slice(0, 32);
  let r = b.slice(32);
  for (const k of subkeys) {
    const e = desPermute(r, DES_E).map((x, i) => x ^ k[i]);
    const out = [];
    for (let s = 0; s < 8; s++) {
      const x = e.slice(s * 6, s * 6 + 6);
      const v = DES_S[s][(x[0] * 2 + x[5]) * 16 + x[1] * 8 + x[2] * 4 + x[3] * 2 + x[4]];
      out.push((v >> 3) & 1, (v >> 2) & 1, (v >> 1) & 1, v & 1);
    }
    const f = desPermute(out, DES_P);
    [l, r] = [r, l.map((x, i) => x ^ f[i])];
  }
  const bits = desPermute(r.concat(l), DES_FP);
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 64; i++) bytes[i >> 3] |= bits[i] << (7 - (i % 8));
  return bytes;
}

function desEcb(data, subkeys) {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i += 8) out.set(desBlock(data.slice(i, i + 8), subkeys), i);
  return out;
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

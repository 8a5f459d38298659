// The JavaScript client under Node's test runner, against a real httpdns server whose
// URL is in HTTPDNS_TEST_SERVER (tests/clients/test_js_client.py starts one and runs
// `node --test clients/js/test/`). A small HTTP proxy in front of it can be stopped and
// started again on the same port to play "the service is down"; a fake clock jumps past
// TTLs instead of waiting for them. Requests are counted with the onRequest hook.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';

import { HttpDnsClient, RequestRejected, SignatureError, md5 } from '../httpdns.mjs';

const SERVER = process.env.HTTPDNS_TEST_SERVER;
const skip = SERVER ? false : 'HTTPDNS_TEST_SERVER is not set (run tests/clients/test_js_client.py)';
const QUOTES = 'quotes.demo.example';
const TRADE = 'trade.demo.example';
const QUOTES_V4 = new Set([0, 1, 2, 3].flatMap((i) => [`192.0.2.${20 + i}`, `198.51.100.${20 + i}`]));
const QUOTES_V6 = new Set([0, 1, 2, 3].map((i) => `2001:db8::${(20 + i).toString(16)}`));
const DIALECTS = {
  d: { dialect: 'd' },
  json: { dialect: 'json' },
  aliyun: { dialect: 'aliyun', account: '100000' },
  'aliyun-signed': { dialect: 'aliyun', account: '100000', secret: 'demo-secret' },
};

function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

function recorder() {
  const r = { requests: [], errors: [], lookups: [] };
  r.hooks = {
    onRequest: (e) => r.requests.push(e),
    onError: (e) => r.errors.push(e),
    onLookup: (e) => r.lookups.push(e),
  };
  return r;
}

async function waitFor(predicate, what, timeout = 5000) {
  const end = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function deadServer() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

/** Accepts connections and never answers. */
async function hangingServer() {
  const sockets = new Set();
  const s = net.createServer((sock) => { sockets.add(sock); sock.on('error', () => {}); });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${s.address().port}`,
    close: () => new Promise((r) => { for (const sock of sockets) sock.destroy(); s.close(r); }),
  };
}

/** A reverse proxy to the real server that can stop and start on the same port. */
class Proxy {
  constructor(target) {
    this.target = target;
    this.port = 0;
    this.sockets = new Set();
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.server = http.createServer(async (req, res) => {
      try {
        const r = await fetch(this.target + req.url);
        const body = await r.text();
        res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
        res.end(body);
      } catch (e) {
        res.writeHead(502);
        res.end(String(e));
      }
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
  }

  async stop() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describe('HttpDnsClient against a real server', { skip }, () => {
  for (const [name, options] of Object.entries(DIALECTS)) {
    test(`the ${name} dialect resolves A and AAAA`, async () => {
      const dns = new HttpDnsClient({ servers: [SERVER], ...options });
      const a = await dns.resolve(QUOTES);
      assert.equal(a.source, 'server');
      assert.equal(a.ttl, 20);
      assert.ok(a.addresses.length > 0 && a.addresses.every((x) => QUOTES_V4.has(x)), a.addresses.join());
      const aaaa = await dns.resolve(QUOTES, 'AAAA');
      assert.ok(aaaa.addresses.length > 0 && aaaa.addresses.every((x) => QUOTES_V6.has(x)));
      assert.equal((await dns.resolve(TRADE)).ttl, 30);
    });
  }

  test('a cached lookup sends no request', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], ...rec.hooks });
    const first = await dns.resolve(QUOTES);
    for (let i = 0; i < 200; i++) {
      const again = await dns.resolve(QUOTES);
      assert.equal(again.source, 'cache');
      assert.deepEqual(again.addresses, first.addresses);
    }
    assert.equal(rec.requests.length, 1);
    assert.equal(dns.peek(QUOTES).source, 'cache');
    assert.equal(dns.invalidate(QUOTES), true); // e.g. every address failed to connect
    assert.equal(dns.peek(QUOTES), null);
    assert.equal((await dns.resolve(QUOTES)).source, 'server');
    assert.equal(rec.requests.length, 2);
  });

  test('concurrent misses share one request', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], ...rec.hooks });
    const answers = await Promise.all(Array.from({ length: 10 }, () => dns.resolve(QUOTES)));
    assert.equal(rec.requests.length, 1);
    assert.ok(answers.every((a) => a.addresses.length > 0));
  });

  test('stale answer while the service is down, fresh after it is back', async () => {
    const clock = fakeClock();
    const rec = recorder();
    const proxy = new Proxy(SERVER);
    await proxy.start();
    const dns = new HttpDnsClient({ servers: [proxy.url], now: clock.now, backoff: 1000, ...rec.hooks });
    try {
      const first = await dns.resolve(QUOTES);
      assert.equal(first.source, 'server');
      await proxy.stop();
      clock.advance(21_000); // past the 20 s TTL

      const started = performance.now();
      const stale = await dns.resolve(QUOTES);
      assert.ok(performance.now() - started < 500);
      assert.equal(stale.source, 'stale');
      assert.deepEqual(stale.addresses, first.addresses);
      await waitFor(() => rec.errors.some((e) => e.stage === 'refresh'), 'the refresh failure');
      const failure = rec.errors.find((e) => e.stage === 'refresh');
      assert.match(failure.error.message, /ECONNREFUSED/);

      await proxy.start(); // same port
      clock.advance(2000); // past the retry interval
      assert.equal((await dns.resolve(QUOTES)).source, 'stale'); // starts the refresh
      await waitFor(() => dns.peek(QUOTES)?.source === 'cache', 'the refresh');
      const fresh = await dns.resolve(QUOTES);
      assert.equal(fresh.source, 'cache');
      assert.ok(fresh.expiresAt > clock.now());
    } finally {
      await proxy.stop().catch(() => {});
    }
  });

  test('staleness is bounded: past maxStale with the service down, null', async () => {
    const clock = fakeClock();
    const proxy = new Proxy(SERVER);
    await proxy.start();
    const dns = new HttpDnsClient({ servers: [proxy.url], now: clock.now, maxStale: 60_000 });
    await dns.resolve(QUOTES);
    await proxy.stop();
    clock.advance(20_000 + 59_000);
    assert.equal((await dns.resolve(QUOTES)).source, 'stale');
    clock.advance(2_000);
    assert.equal(await dns.resolve(QUOTES), null);
    assert.equal(dns.peek(QUOTES), null);
  });

  test('TTL expiry is honoured and refresh-ahead runs at 75 % for names in use', async () => {
    const clock = fakeClock();
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], now: clock.now, ...rec.hooks });
    await dns.resolve(QUOTES);
    clock.advance(14_000);
    assert.equal((await dns.resolve(QUOTES)).source, 'cache');
    assert.equal(rec.requests.length, 1);
    clock.advance(1_500); // 77 %: served from the cache, refreshed in the background
    assert.equal((await dns.resolve(QUOTES)).source, 'cache');
    await waitFor(() => rec.requests.length === 2, 'the refresh-ahead');
    assert.equal(rec.requests[1].background, true);
    await waitFor(() => dns.peek(QUOTES).expiresAt === clock.now() + 20_000, 'the new entry');
    clock.advance(20_001);
    assert.equal((await dns.resolve(QUOTES)).source, 'stale'); // never served as fresh
  });

  test('fails over from a dead server and backs it off', async () => {
    const rec = recorder();
    const dead = await deadServer();
    const dns = new HttpDnsClient({ servers: [dead, SERVER], backoff: 30_000, ...rec.hooks });
    assert.equal((await dns.resolve(QUOTES)).server, new URL(SERVER).origin);
    assert.deepEqual(rec.requests.map((e) => [e.server, e.status]), [[dead, null], [SERVER, 200]]);
    await dns.resolve(TRADE);
    assert.equal(rec.requests.length, 3); // the dead one was skipped
    const [state] = dns.serverStates();
    assert.equal(state.failures, 1);
    assert.ok(state.retryIn > 20 && state.retryIn <= 30, `retryIn ${state.retryIn} s`);
  });

  test('a hanging server times out and the next one answers', async () => {
    const hang = await hangingServer();
    const rec = recorder();
    try {
      const dns = new HttpDnsClient({ servers: [hang.url, SERVER], timeout: 300, ...rec.hooks });
      const started = performance.now();
      const a = await dns.resolve(QUOTES);
      const elapsed = performance.now() - started;
      assert.ok(a.addresses.length > 0);
      assert.ok(elapsed >= 250 && elapsed < 3000, `took ${elapsed} ms`);
      assert.match(rec.requests[0].error.message, /within 300 ms/);
    } finally {
      await hang.close();
    }
  });

  test('nothing can be had: null (use normal DNS), reported through onError', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [await deadServer(), await deadServer()], ...rec.hooks });
    assert.equal(await dns.resolve(QUOTES), null);
    assert.equal(rec.requests.length, 2);
    assert.equal(rec.errors[0].stage, 'lookup');
    assert.equal(rec.lookups[0].source, null);
  });

  test('negative answers are cached and give null', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], ...rec.hooks });
    assert.equal(await dns.resolve('nope.demo.example'), null);
    assert.equal(await dns.resolve('nope.demo.example'), null);
    assert.equal(rec.requests.length, 1);
    assert.equal(rec.lookups[1].source, 'cache');
  });

  test('resolveMany batches five names per request with the aliyun dialect', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], dialect: 'aliyun', account: '100000', ...rec.hooks });
    const names = [QUOTES, TRADE, 'nope.demo.example', 'a.demo.example', 'b.demo.example', 'c.demo.example'];
    const out = await dns.resolveMany([...names, 'Quotes.Demo.Example']);
    assert.equal(rec.requests.length, 2);
    assert.ok(out[QUOTES].addresses.every((x) => QUOTES_V4.has(x)));
    assert.deepEqual(out['Quotes.Demo.Example'], out[QUOTES]);
    assert.equal(out['nope.demo.example'], null);
    await dns.resolveMany([QUOTES, TRADE]);
    assert.equal(rec.requests.length, 2);
  });

  test('a wrong secret fails with a clear error; so does an unknown account', async () => {
    const dns = new HttpDnsClient({ servers: [SERVER], dialect: 'aliyun', account: '100000', secret: 'wrong' });
    await assert.rejects(dns.resolve(QUOTES), (e) => {
      assert.ok(e instanceof SignatureError);
      assert.match(e.message, /InvalidSignature.*check the secret of account 100000/);
      return true;
    });
    const unknown = new HttpDnsClient({ servers: [SERVER], dialect: 'aliyun', account: '999' });
    await assert.rejects(unknown.resolve(QUOTES), RequestRejected);
  });

  test('preresolve warms the cache', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], preresolve: [QUOTES, TRADE], ...rec.hooks });
    assert.equal(await dns.ready, 2);
    assert.equal((await dns.resolve(QUOTES)).source, 'cache');
    assert.equal((await dns.resolve(TRADE)).source, 'cache');
    assert.equal(rec.requests.length, 2);
  });
});

describe('pure parts', () => {
  test('md5 matches node:crypto', () => {
    for (const s of ['', 'a', 'quotes.demo.example-demo-secret-1700000300', 'x'.repeat(55), 'x'.repeat(56), 'é中'.repeat(40)]) {
      assert.equal(md5(s), createHash('md5').update(s).digest('hex'));
    }
  });

  test('IP literals answer themselves without a request', async () => {
    const fetch = async () => { throw new Error('no request expected'); };
    const dns = new HttpDnsClient({ servers: ['http://a'], fetch });
    assert.deepEqual((await dns.resolve('192.0.2.7')).addresses, ['192.0.2.7']);
    assert.equal((await dns.resolve('192.0.2.7')).source, 'system');
    assert.deepEqual((await dns.resolve('[2001:db8::1]', 'AAAA')).addresses, ['2001:db8::1']);
    assert.equal(await dns.resolve('2001:db8::1', 'A'), null);
    assert.deepEqual((await dns.resolveMany(['192.0.2.8']))['192.0.2.8'].addresses, ['192.0.2.8']);
  });

  test('options are checked', () => {
    assert.throws(() => new HttpDnsClient({ servers: [] }), TypeError);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], dialect: 'aliyun' }), /account/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], secret: 's' }), /aliyun/);
    assert.throws(() => new HttpDnsClient({ servers: ['ftp://x'] }), /scheme/);
  });

  test('a garbled answer is a server failure, the next server is tried', async () => {
    const answers = { 'http://a': 'not-an-ip,20', 'http://b': '192.0.2.1,20' };
    const fetch = async (url) => new Response(answers[new URL(url).origin]);
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: ['http://a', 'http://b'], fetch, ...rec.hooks });
    assert.deepEqual((await dns.resolve('x.example')).addresses, ['192.0.2.1']);
    assert.match(rec.requests[0].error.message, /unreadable answer/);
  });
});

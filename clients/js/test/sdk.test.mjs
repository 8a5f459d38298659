// SDK parity features of the JavaScript client under Node's test runner, against real
// httpdns servers started by tests/clients/test_js_client.py:
//   HTTPDNS_TEST_DNSPOD_SERVER  a demo server with DNSPod account 1001 (DES key dnspodpass,
//                               AES key 0123456789abcdef) and 1002 (another DES key only);
//   HTTPDNS_TEST_HTTPS          an https URL whose certificate names 127.0.0.1 (its CA is in
//                               NODE_EXTRA_CA_CERTS), HTTPDNS_TEST_PIN its key's pin.
// Requests are counted with the onRequest hook; a fake clock jumps past TTLs.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DnspodCipher, HttpDnsClient, PinMismatch, RequestRejected } from '../httpdns.mjs';

const SERVER = process.env.HTTPDNS_TEST_DNSPOD_SERVER;
const HTTPS = process.env.HTTPDNS_TEST_HTTPS;
const PIN = process.env.HTTPDNS_TEST_PIN;
const skip = SERVER ? false : 'HTTPDNS_TEST_DNSPOD_SERVER is not set (run tests/clients/test_js_client.py)';
const skipHttps = HTTPS && PIN ? false : 'HTTPDNS_TEST_HTTPS is not set';
const MODULE = fileURLToPath(new URL('../httpdns.mjs', import.meta.url));
const QUOTES = 'quotes.demo.example';
const TRADE = 'trade.demo.example';
const QUOTES_V4 = new Set([0, 1, 2, 3].flatMap((i) => [`192.0.2.${20 + i}`, `198.51.100.${20 + i}`]));
const QUOTES_V6 = new Set([0, 1, 2, 3].map((i) => `2001:db8::${(20 + i).toString(16)}`));
const DES = { dnspodId: '1001', dnspodKey: 'dnspodpass' };
const AES = { dnspodId: '1001', dnspodKey: '0123456789abcdef', encryption: 'aes' };

function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

function recorder() {
  const r = { requests: [], errors: [] };
  r.hooks = { onRequest: (e) => r.requests.push(e), onError: (e) => r.errors.push(e) };
  r.ok = (background) => r.requests.filter((e) => e.status === 200 && (background == null || e.background === background));
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

/** A localStorage stand-in (the same getItem/setItem interface). */
function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), map: m };
}

async function plainD(query) {
  return (await fetch(`${SERVER}/d?${query}`)).text();
}

describe('DNSPod ciphers', () => {
  test('the published DES example and the lua-resty-des one', async () => {
    const des = new DnspodCipher('des', 'dnspodpass');
    assert.equal(await des.encryptHex('www.dnspod.cn'), '87ae992c1321f299da3c0210a9900ae7');
    assert.equal(await des.decryptHex('87ae992c1321f299da3c0210a9900ae7'), 'www.dnspod.cn');
    assert.equal(await new DnspodCipher('des', 'weijianliao').encryptHex('www.google.com'), 'cd52888ecabcac455a14ddbac7f03d97');
    // An answer body encrypted with the OpenSSL CLI (golden, recorded once).
    assert.equal(await des.decryptHex('523362ba93cdece11dcc81c38e98dc73ef055b840fc746fcd84cbdcff638cefa'), '192.0.2.20;198.51.100.21,20');
  });

  test('DES agrees with OpenSSL (node --openssl-legacy-provider) on 200 random inputs', async () => {
    const cases = Array.from({ length: 200 }, (_, i) => ({
      key: Array.from({ length: 8 + (i % 5) }, (_, j) => String.fromCharCode(33 + ((i * 7 + j * 13) % 90))).join(''),
      text: 'x'.repeat(i % 40) + `.n${i}.example`,
    }));
    const script = `
      const c = require('node:crypto');
      const cases = JSON.parse(process.argv[1]);
      console.log(JSON.stringify(cases.map(({ key, text }) => {
        const e = c.createCipheriv('des-ecb', Buffer.from(key).subarray(0, 8), null);
        return Buffer.concat([e.update(text), e.final()]).toString('hex');
      })));`;
    const expected = JSON.parse(execFileSync(process.execPath, ['--openssl-legacy-provider', '-e', script, JSON.stringify(cases)]).toString());
    for (const [i, { key, text }] of cases.entries()) {
      const des = new DnspodCipher('des', key);
      assert.equal(await des.encryptHex(text), expected[i], `${key} ${text}`);
      assert.equal(await des.decryptHex(expected[i]), text);
    }
  });

  test('AES round trips with a fresh IV, and matches OpenSSL', async () => {
    const aes = new DnspodCipher('aes', '0123456789abcdef');
    const one = await aes.encryptHex(QUOTES);
    const two = await aes.encryptHex(QUOTES);
    assert.notEqual(one.slice(0, 32), two.slice(0, 32));
    assert.equal(await aes.decryptHex(one), QUOTES);
    // openssl enc -aes-128-cbc -iv 000102...0f (golden, recorded once)
    const golden = '000102030405060708090a0b0c0d0e0fd186e7b286d5c05944e7f026220e0dbea82a027e2071a7be9ba7eb5e49311abb';
    assert.equal(await aes.decryptHex(golden), QUOTES);
    await assert.rejects(aes.decryptHex(golden.slice(0, -2)), /whole AES blocks/);
    await assert.rejects(new DnspodCipher('aes', 'fedcba9876543210').decryptHex(golden), /bad padding/);
    await assert.rejects(new DnspodCipher('des', 'wrongkey').decryptHex('87ae992c1321f299da3c0210a9900ae7'), /bad padding|ascii|encoded/i);
  });

  test('options are checked', () => {
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], dnspodId: '1' }), /dnspodKey/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], dialect: 'json', ...DES }), /dialect 'd'/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], dnspodId: '1', dnspodKey: 'short' }), /8 bytes/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], ...DES, encryption: 'rc4' }), /des or aes/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], pins: ['sha256/abc'] }), /SHA-256/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], pins: [`sha256/${'A'.repeat(43)}=`] }), /https servers only/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], cacheStore: {} }), /cacheStore/);
    assert.throws(() => new HttpDnsClient({ servers: ['http://x'], fallback: 'dns' }), /fallback/);
  });
});

describe('SDK parity against a real server', { skip }, () => {
  for (const [label, options] of [['des', DES], ['aes', AES]]) {
    test(`the encrypted dialect (${label}) end to end`, async () => {
      const rec = recorder();
      const dns = new HttpDnsClient({ servers: [SERVER], ...options, ...rec.hooks });
      const a = await dns.resolve(QUOTES);
      assert.equal(a.source, 'server');
      assert.equal(`${a.addresses.join(';')},${a.ttl}`, await plainD(`dn=${QUOTES}&ttl=1`));
      assert.ok(!rec.requests[0].error);
      const six = await dns.resolve(QUOTES, 'AAAA');
      assert.ok(six.addresses.length && six.addresses.every((x) => QUOTES_V6.has(x)));
      assert.equal(await dns.resolve(`nope.${QUOTES}`), null);
      assert.equal((await dns.resolve(QUOTES)).source, 'cache');
      assert.equal(rec.ok().length, 3);
    });
  }

  test('encrypted refusals are clear', async () => {
    const cases = [
      [{ dnspodId: '1001', dnspodKey: 'wrong-key' }, 400, /check dnspodKey/],
      [{ dnspodId: '4242', dnspodKey: 'dnspodpass' }, 404, /does not know dnspodId 4242/],
      [{ dnspodId: '1002', dnspodKey: '0123456789abcdef', encryption: 'aes' }, 403, /has no aes key/],
    ];
    for (const [options, status, hint] of cases) {
      const dns = new HttpDnsClient({ servers: [SERVER], ...options });
      await assert.rejects(dns.resolve(QUOTES), (e) => {
        assert.ok(e instanceof RequestRejected);
        assert.equal(e.status, status);
        assert.match(e.message, hint);
        return true;
      });
    }
  });

  const BOTH = {
    d: [{ dialect: 'd' }, 1],
    aliyun: [{ dialect: 'aliyun', account: '100000' }, 1],
    'aliyun-signed': [{ dialect: 'aliyun', account: '100000', secret: 'demo-secret' }, 1],
    'dnspod-des': [DES, 1],
    'dnspod-aes': [AES, 1],
    json: [{ dialect: 'json' }, 2],
  };
  for (const [label, [options, perName]] of Object.entries(BOTH)) {
    test(`resolveBoth with the ${label} dialect`, async () => {
      const rec = recorder();
      const dns = new HttpDnsClient({ servers: [SERVER], ...options, ...rec.hooks });
      const both = await dns.resolveBoth(QUOTES);
      assert.ok(both.ipv4.addresses.every((x) => QUOTES_V4.has(x)) && both.ipv4.addresses.length);
      assert.ok(both.ipv6.addresses.every((x) => QUOTES_V6.has(x)) && both.ipv6.addresses.length);
      assert.deepEqual(both.addresses, [...both.ipv4.addresses, ...both.ipv6.addresses]);
      assert.equal(both.source, 'server');
      assert.equal(rec.ok().length, perName);
      assert.equal((await dns.resolve(QUOTES, 'AAAA')).source, 'cache');
      const again = await dns.resolveBoth(QUOTES, 'ipv6');
      assert.equal(again.source, 'cache');
      assert.deepEqual(again.addresses, [...both.ipv6.addresses, ...both.ipv4.addresses]);
      const trade = await dns.resolveBoth(TRADE); // A only
      assert.equal(trade.ipv6, null);
      assert.deepEqual(trade.addresses, trade.ipv4.addresses);
      assert.equal(await dns.resolveBoth(`nope.${QUOTES}`), null);
      assert.equal(rec.ok().length, 3 * perName);
    });
  }

  test('the persistent cache (localStorage) survives a new client, within maxAge only', async () => {
    const storage = memoryStorage();
    const first = new HttpDnsClient({ servers: [SERVER], cacheStore: storage });
    const a = await first.resolve(QUOTES);
    assert.ok(first.persist());
    assert.equal(JSON.parse(storage.getItem('httpdns-cache')).answers[0].name, QUOTES);

    const dead = await deadServer();
    const rec = recorder();
    const restarted = new HttpDnsClient({ servers: [dead], cacheStore: storage, ...rec.hooks });
    const b = await restarted.resolve(QUOTES);
    assert.equal(b.source, 'cache');
    assert.deepEqual(b.addresses, a.addresses);
    assert.equal(rec.requests.length, 0);

    const tooOld = new HttpDnsClient({ servers: [dead], cacheStore: storage, maxAge: 60_000, wallClock: () => Date.now() + 61_000 });
    assert.equal(tooOld.peek(QUOTES), null);
    assert.equal(await tooOld.resolve(QUOTES), null);

    // Past the TTL (20 s), within maxAge: served stale, revalidated at once.
    const later = recorder();
    const stale = new HttpDnsClient({ servers: [SERVER], cacheStore: storage, wallClock: () => Date.now() + 25_000, ...later.hooks });
    assert.equal((await stale.resolve(QUOTES)).source, 'stale');
    await waitFor(() => later.ok(true).length === 1, 'the revalidation');
    await waitFor(() => stale.peek(QUOTES)?.source === 'cache', 'a fresh answer');
  });

  test('a restored answer stops at maxAge even within its TTL', async () => {
    const clock = fakeClock();
    const wall = Date.now();
    const storage = memoryStorage();
    storage.setItem('httpdns-cache', JSON.stringify({ format: 1, answers: [
      { name: TRADE, type: 'A', addresses: ['192.0.2.10'], ttl: 3600, fetched: wall / 1000 - 100, server: null },
      { name: QUOTES, type: 'A', addresses: ['not-an-ip'], ttl: 20, fetched: wall / 1000 },
    ] }));
    const dns = new HttpDnsClient({ servers: [await deadServer()], cacheStore: storage, maxAge: 150_000, now: clock.now, wallClock: () => wall });
    assert.equal((await dns.resolve(TRADE)).source, 'cache');
    assert.equal(dns.peek(QUOTES), null); // malformed: skipped
    clock.advance(49_000);
    assert.equal((await dns.resolve(TRADE)).source, 'cache');
    clock.advance(2_000); // 151 s after it was fetched
    assert.equal(dns.peek(TRADE), null);
    assert.equal(await dns.resolve(TRADE), null);
  });

  test('maxAge bounds live answers too', async () => {
    const clock = fakeClock();
    const dns = new HttpDnsClient({ servers: [SERVER], maxAge: 5000, now: clock.now });
    const a = await dns.resolve(QUOTES); // TTL 20 s
    assert.equal(a.ttl, 20);
    assert.equal(a.expiresAt, clock.now() + 5000);
    clock.advance(4500);
    assert.equal((await dns.resolve(QUOTES)).source, 'cache');
    clock.advance(1000);
    assert.equal(dns.peek(QUOTES), null); // not even stale
    assert.throws(() => new HttpDnsClient({ servers: [SERVER], maxAge: 0 }), /maxAge/);
  });

  test('the persistent cache survives a restart of the client process (callback store)', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'httpdns-js-')), 'cache.json');
    const child = `
      import { HttpDnsClient } from ${JSON.stringify(MODULE)};
      import { writeFileSync } from 'node:fs';
      const store = { load: () => [], save: (records) => writeFileSync(${JSON.stringify(file)}, JSON.stringify(records)) };
      const dns = new HttpDnsClient({ servers: [${JSON.stringify(SERVER)}], cacheStore: store });
      const a = await dns.resolveBoth(${JSON.stringify(QUOTES)});
      dns.persist();
      console.log(JSON.stringify(a.addresses));`;
    const addresses = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', child]).toString());
    const rec = recorder();
    const store = { load: async () => JSON.parse(readFileSync(file, 'utf8')), save: (r) => writeFileSync(file, JSON.stringify(r)) };
    const dns = new HttpDnsClient({ servers: [await deadServer()], cacheStore: store, ...rec.hooks });
    const both = await dns.resolveBoth(QUOTES); // waits for the async load
    assert.equal(both.source, 'cache');
    assert.deepEqual(both.addresses, addresses);
    assert.equal(rec.requests.length, 0);
  });

  test('networkChanged re-resolves hot names and marks the others stale', async () => {
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [SERVER], ...rec.hooks });
    await dns.resolve(QUOTES);
    await dns.resolve(QUOTES, 'AAAA');
    await dns.prefetch([TRADE]); // cached, never used
    await dns.resolve(`nope.${QUOTES}`); // negative
    assert.equal(rec.ok().length, 4);
    assert.equal(dns.networkChanged(), 2);
    await waitFor(() => rec.ok(true).length === 3, 'two re-resolutions');
    const refreshed = rec.ok(true).slice(1).map((e) => `${e.names[0]} ${e.type}`).sort();
    assert.deepEqual(refreshed, [`${QUOTES} A`, `${QUOTES} AAAA`]);
    await waitFor(() => dns.peek(QUOTES)?.source === 'cache', 'a fresh QUOTES');
    assert.equal(dns.peek(TRADE).source, 'stale');
    assert.equal((await dns.resolve(TRADE)).source, 'stale');
    await waitFor(() => rec.ok(true).length === 4, 'TRADE revalidated');
    await dns.resolve(`nope.${QUOTES}`);
    assert.equal(rec.ok(false).length, 4); // the negative answer was dropped: asked again
  });

  test('networkChanged forgets server backoff', async () => {
    const dead = await deadServer();
    const rec = recorder();
    const dns = new HttpDnsClient({ servers: [dead, SERVER], backoff: 60_000, ...rec.hooks });
    await dns.resolve(QUOTES);
    assert.ok(dns.serverStates()[0].retryIn > 30);
    dns.networkChanged();
    assert.deepEqual(dns.serverStates().map((s) => s.retryIn), [0, 0]);
    await waitFor(() => rec.ok(true).length === 1, 'the re-resolution');
    assert.deepEqual(rec.requests.filter((e) => e.background).map((e) => e.server), [dead, SERVER]);
  });

  test('the fallback hook answers when no server does', async () => {
    const asked = [];
    const rec = recorder();
    const dns = new HttpDnsClient({
      servers: [await deadServer()],
      fallback: async (name, type) => { asked.push(`${name} ${type}`); return type === 'A' ? ['192.0.2.99'] : null; },
      ...rec.hooks,
    });
    const a = await dns.resolve(QUOTES);
    assert.deepEqual([a.addresses, a.source], [['192.0.2.99'], 'system']);
    assert.equal(dns.peek(QUOTES), null); // not cached
    assert.deepEqual((await dns.resolveMany([TRADE]))[TRADE].addresses, ['192.0.2.99']);
    const both = await dns.resolveBoth(QUOTES, 'ipv6');
    assert.deepEqual([both.addresses, both.ipv6], [['192.0.2.99'], null]);
    assert.equal(rec.errors.filter((e) => e.stage === 'lookup').length, 3);
    const failing = new HttpDnsClient({ servers: [await deadServer()], fallback: () => { throw new Error('no DNS'); }, ...rec.hooks });
    assert.equal(await failing.resolve(QUOTES), null);
    assert.match(rec.errors.at(-1).error.message, /no DNS/);
  });
});

describe('HTTPS with SPKI pinning (Node)', { skip: skipHttps }, () => {
  test('a pinned key is accepted, another refused like a dead server', async () => {
    const backup = `sha256/${Buffer.alloc(32, 1).toString('base64')}`;
    const seen = recorder();
    const ok = new HttpDnsClient({ servers: [HTTPS], pins: [backup, PIN], ...seen.hooks });
    const answer = await ok.resolve(QUOTES);
    assert.ok(answer?.addresses.every((x) => QUOTES_V4.has(x)), String(seen.requests[0]?.error));
    const rec = recorder();
    const refused = new HttpDnsClient({ servers: [HTTPS], pins: [backup], ...rec.hooks });
    assert.equal(await refused.resolve(QUOTES), null);
    assert.ok(rec.requests[0].error instanceof PinMismatch, String(rec.requests[0].error));
    assert.match(rec.requests[0].error.message, /is not pinned/);
  });
});

// The callback service (seed 003) in process: a real stand-in upstream over HTTP, the real
// listener, real PostgreSQL. TTL 2 s, lease 1 s, lookup timeout 1 s.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import {
  backlog,
  processed,
  range,
  startTestCallbacks,
  startUpstream,
  storedIds,
} from './callbacks-helpers.ts';
import { createTestDatabase, dsnFor, waitFor } from './helpers.ts';

const evens = (ids: number[]) => ids.filter((id) => id % 2 === 0);

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(' ').pop());
  }
  return total;
}

describe('accepting callbacks', async () => {
  const { upstream, url: upstreamUrl } = await startUpstream({ minDelayMs: 300, maxDelayMs: 400 });
  const callbacks = await startTestCallbacks(upstreamUrl);

  const badBodies: [string, string | Buffer, string][] = [
    ['malformed JSON', '{"object_ids": [1, 2', 'body contains badly-formed JSON'],
    ['an empty body', '', 'body must not be empty'],
    ['a JSON array', '[1, 2]', 'body must be a JSON object'],
    ['no object_ids', '{"ids": [1]}', 'body must contain object_ids'],
    [
      'object_ids not an array',
      '{"object_ids": "1,2"}',
      'object_ids must be an array of non-negative integers',
    ],
    ['a negative id', '{"object_ids": [1, -2]}', 'object_ids must be an array of non-negative integers'],
    ['a fractional id', '{"object_ids": [1.5]}', 'object_ids must be an array of non-negative integers'],
    ['an id as a string', '{"object_ids": ["3"]}', 'object_ids must be an array of non-negative integers'],
    ['a null id', '{"object_ids": [null]}', 'object_ids must be an array of non-negative integers'],
    [
      'an id over 2^53',
      '{"object_ids": [9007199254740993]}',
      'object_ids must be an array of non-negative integers',
    ],
    [
      '10,001 ids',
      JSON.stringify({ object_ids: range(1, 10_001) }),
      'object_ids must not contain more than 10000 ids',
    ],
    [
      'a body over 1 MB',
      `{"object_ids": [1], "padding": "${'x'.repeat(1_048_576)}"}`,
      'body must not be larger than 1048576 bytes',
    ],
  ];
  for (const [what, body, message] of badBodies) {
    test(`when the body is ${what}, then 400 with a JSON error and nothing is stored`, async () => {
      const rejectedBefore = await metric(callbacks.url, 'greenlight_callbacks_rejected_total');
      const res = await callbacks.post(body);
      assert.equal(res.status, 400);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.ok(res.headers.get('x-request-id'));
      assert.deepEqual(await res.json(), { error: message });
      assert.equal(await backlog(callbacks), 0);
      assert.equal(await metric(callbacks.url, 'greenlight_callbacks_rejected_total'), rejectedBefore + 1);
    });
  }

  test('when the Content-Type is malformed, then the body is read all the same: any Content-Type is accepted', async () => {
    for (const type of ['x', '/', 'text/plain; charset']) {
      const res = await callbacks.post({ object_ids: [] }, { headers: { 'content-type': type } });
      assert.equal(res.status, 200, `${type}: ${await res.text()}`);
    }
    await processed(callbacks);
  });

  test('when other methods or paths are asked for, then JSON 405 and 404', async () => {
    const wrongMethod = await fetch(`${callbacks.url}/callback`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'OPTIONS, POST');
    const unknown = await fetch(`${callbacks.url}/nothing`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: 'the requested resource could not be found' });
    const badLimit = await fetch(`${callbacks.url}/objects?limit=0`);
    assert.equal(badLimit.status, 400);
  });

  test('when a valid callback arrives, then it is stored before the 200 and every online id ends up stored, no offline one', async () => {
    const ids = [5, 1, 2, 2, 3, 4, 4, 4, 10, 11, 12];
    const [{ now: before }] = (await callbacks.query<{ now: Date }>('SELECT now()')) as [{ now: Date }];
    const res = await callbacks.post({ object_ids: ids }, { headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { accepted: 8 });
    // The upstream takes 300 ms or more: the callback is still in the intake.
    const [stored] = await callbacks.query<{ object_ids: string[]; received_at: Date }>(
      'SELECT object_ids, received_at FROM callback_batches',
    );
    assert.deepEqual(stored?.object_ids.map(Number), [1, 2, 3, 4, 5, 10, 11, 12]);
    await processed(callbacks);
    assert.deepEqual(await storedIds(callbacks), [2, 4, 10, 12]);
    const rows = await callbacks.query<{ last_seen: Date }>(
      'SELECT DISTINCT last_seen FROM callback_objects',
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.last_seen.getTime(), stored?.received_at.getTime());
    assert.ok((stored?.received_at.getTime() ?? 0) >= before.getTime());
    for (const id of range(1, 12)) {
      assert.ok((upstream.requests.get(id) ?? 0) <= 1, `id ${id} looked up more than once`);
    }
    const listed = (await (await fetch(`${callbacks.url}/objects`)).json()) as {
      objects: { object_id: number; last_seen: string }[];
    };
    assert.deepEqual(
      listed.objects.map((o) => o.object_id),
      [2, 4, 10, 12],
    );
    assert.equal(listed.objects[0]?.last_seen, stored?.received_at.toISOString());
    assert.equal(await metric(callbacks.url, 'greenlight_callback_ids_received_total'), ids.length);
  });

  test('when a wave of callbacks shares ids, then each distinct id is requested upstream once', async () => {
    upstream.requests.clear();
    const wave = Array.from({ length: 20 }, (_, i) => ({ object_ids: range(100 + i * 3, 130 + i * 3) }));
    const answers = await Promise.all(wave.map((body) => callbacks.post(body)));
    assert.deepEqual(
      answers.map((a) => a.status),
      wave.map(() => 200),
    );
    await processed(callbacks);
    const distinct = new Set(wave.flatMap((b) => b.object_ids));
    assert.deepEqual(
      [...upstream.requests.keys()].sort((a, b) => a - b),
      [...distinct].sort((a, b) => a - b),
    );
    for (const [id, count] of upstream.requests) assert.equal(count, 1, `id ${id} requested ${count} times`);
    const stored = new Set(await storedIds(callbacks));
    for (const id of distinct) assert.equal(stored.has(id), id % 2 === 0, `id ${id}`);
  });

  test('when an older callback is processed after a newer one, then last_seen does not move backwards', async () => {
    await callbacks.post({ object_ids: [200] });
    await processed(callbacks);
    const [first] = await callbacks.query<{ last_seen: Date }>(
      'SELECT last_seen FROM callback_objects WHERE object_id = 200',
    );
    // A callback that arrived earlier, still in the intake (e.g. handed back for a retry).
    await callbacks.query(
      `INSERT INTO callback_batches (object_ids, received_at) VALUES ('{200}', $1::timestamptz - interval '500 ms')`,
      [first?.last_seen],
    );
    await processed(callbacks);
    const [after] = await callbacks.query<{ last_seen: Date }>(
      'SELECT last_seen FROM callback_objects WHERE object_id = 200',
    );
    assert.equal(after?.last_seen.getTime(), first?.last_seen.getTime());
    await callbacks.post({ object_ids: [200] });
    await processed(callbacks);
    const [later] = await callbacks.query<{ last_seen: Date }>(
      'SELECT last_seen FROM callback_objects WHERE object_id = 200',
    );
    assert.ok((later?.last_seen.getTime() ?? 0) > (first?.last_seen.getTime() ?? 0));
  });

  test('when a stored callback is older than the TTL when claimed, then it is dropped, counted and logged, not looked up', async () => {
    upstream.requests.clear();
    await callbacks.query(
      `INSERT INTO callback_batches (object_ids, received_at) VALUES ('{400,402}', now() - interval '3 seconds')`,
    );
    await processed(callbacks);
    assert.equal(upstream.requests.size, 0);
    const rows = await callbacks.query('SELECT 1 FROM callback_objects WHERE object_id IN (400, 402)');
    assert.equal(rows.length, 0);
    assert.equal(await metric(callbacks.url, 'greenlight_callback_ids_abandoned_total'), 2);
    assert.ok(callbacks.lines.some((l) => l.msg === 'callback older than the TTL dropped unresolved'));
  });

  test('when an object is not seen again, then its row is gone between the TTL and the TTL + 2 s', async () => {
    const expiredBefore = await metric(callbacks.url, 'greenlight_callback_objects_expired_total');
    await callbacks.post({ object_ids: [300] });
    const [row] = await waitFor('object 300 to be stored', async () => {
      const rows = await callbacks.query<{ last_seen: Date }>(
        'SELECT last_seen FROM callback_objects WHERE object_id = 300',
      );
      return rows.length > 0 && rows;
    });
    const [gone] = await waitFor(
      'object 300 to expire',
      async () => {
        const rows = await callbacks.query<{ present: boolean; age_ms: number }>(
          `SELECT EXISTS (SELECT 1 FROM callback_objects WHERE object_id = 300) AS present,
                  EXTRACT(EPOCH FROM now() - $1::timestamptz) * 1000 AS age_ms`,
          [row?.last_seen],
        );
        return rows[0]?.present === false && rows;
      },
      6_000,
    );
    const age = Number(gone?.age_ms);
    assert.ok(age >= 2_000 && age <= 4_000, `gone ${age} ms after its last sighting`);
    assert.ok((await metric(callbacks.url, 'greenlight_callback_objects_expired_total')) > expiredBefore);
  });

  test('when asked for health and metrics, then the backlog, its age and the breaker are reported', async () => {
    const health = await fetch(`${callbacks.url}/`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as Record<string, unknown>;
    assert.equal(body.status, 'available');
    assert.deepEqual(Object.keys(body.backlog as object).sort(), ['callbacks', 'oldest_age_seconds']);
    assert.equal(body.breaker, 'closed');
    const text = await (await fetch(`${callbacks.url}/metrics`)).text();
    for (const name of [
      'greenlight_callbacks_received_total',
      'greenlight_callbacks_rejected_total',
      'greenlight_callback_ids_received_total',
      'greenlight_callback_lookups_total{outcome="online"}',
      'greenlight_callback_lookup_duration_seconds_bucket',
      'greenlight_callback_lookups_in_flight',
      'greenlight_callback_backlog',
      'greenlight_callback_backlog_age_seconds',
      'greenlight_callback_breaker_state',
      'greenlight_callback_objects_stored',
      'greenlight_callback_objects_expired_total',
      'greenlight_callback_request_duration_seconds_bucket{le="0.1",status="200"}',
    ]) {
      assert.ok(text.includes(name), `${name} missing from /metrics`);
    }
  });
});

describe('availability', async () => {
  test('when the database does not answer, then health, /objects and POST /callback answer 503 in JSON, not 500', async () => {
    const { url } = await startUpstream();
    const callbacks = await startTestCallbacks(url, { dsn: dsnFor('no_such_database') });
    const health = await fetch(`${callbacks.url}/`);
    assert.equal(health.status, 503);
    assert.deepEqual(await health.json(), { error: 'the database is unavailable' });
    const objects = await fetch(`${callbacks.url}/objects`);
    assert.equal(objects.status, 503);
    assert.deepEqual(await objects.json(), { error: 'the database is unavailable' });
    const res = await callbacks.post({ object_ids: [1] });
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { error: 'the callback could not be stored, please retry' });
    assert.ok(res.headers.get('x-request-id'));
    for (const answer of [health, objects, res]) assert.equal(answer.headers.get('retry-after'), '5');
    const metrics = await fetch(`${callbacks.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^greenlight_callback_backlog nan$/im);
  });

  test("when a client is idle for longer than the task client's 5 s, then its keep-alive connection is reused", async () => {
    const { url } = await startUpstream();
    const callbacks = await startTestCallbacks(url);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = request(`${callbacks.url}/callback`, { method: 'POST', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end('{"object_ids": []}');
      });
    assert.deepEqual(await post(), { status: 200, reused: false });
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    assert.deepEqual(await post(), { status: 200, reused: true });
    agent.destroy();
  });
});

describe('an upstream that fails', async () => {
  test('when half the lookups fail, then retries store every online object', async () => {
    const { upstream, url } = await startUpstream({ failureRate: 0.5, minDelayMs: 5, maxDelayMs: 20 });
    const callbacks = await startTestCallbacks(url, { flags: ['-callbacks-ttl', '30s'] });
    const ids = range(1, 80);
    assert.equal((await callbacks.post({ object_ids: ids })).status, 200);
    // A lookup fails its three attempts with a chance of 1 in 8, and the callback's rounds
    // wait 0.25-0.5 s, then twice as long each time: all 80 ids are resolved after four
    // rounds (about 7 s) in 98 % of runs, after six (about 23 s) in all but 0.03 %.
    await processed(callbacks, 30_000);
    assert.deepEqual(await storedIds(callbacks), evens(ids));
    assert.ok(upstream.totalRequests > ids.length, 'failed lookups were retried');
    assert.ok((await metric(callbacks.url, 'greenlight_callback_lookups_total{outcome="error"}')) > 0);
  });

  test('when answers are not JSON or for another id, then they are failed lookups, retried, and nothing crashes', async () => {
    const { upstream, url } = await startUpstream({ mode: 'not-json' });
    const callbacks = await startTestCallbacks(url, { flags: ['-callbacks-ttl', '30s'] });
    assert.equal((await callbacks.post({ object_ids: [2, 3, 4] })).status, 200);
    await waitFor(
      'invalid answers',
      async () => (await metric(callbacks.url, 'greenlight_callback_lookups_total{outcome="invalid"}')) >= 3,
    );
    upstream.behaviour.mode = 'wrong-id';
    const invalid = await metric(callbacks.url, 'greenlight_callback_lookups_total{outcome="invalid"}');
    await waitFor(
      'more invalid answers',
      async () =>
        (await metric(callbacks.url, 'greenlight_callback_lookups_total{outcome="invalid"}')) > invalid,
    );
    assert.deepEqual(await storedIds(callbacks), []);
    upstream.behaviour.mode = 'normal';
    await waitFor('the objects to be stored', async () => (await storedIds(callbacks)).length === 2, 15_000);
    assert.deepEqual(await storedIds(callbacks), [2, 4]);
  });

  test('when the upstream hangs, then the breaker opens, half-opens to probe, closes once it answers, and no object is lost', async () => {
    const { upstream, url } = await startUpstream({ mode: 'hang' });
    const callbacks = await startTestCallbacks(url, {
      flags: ['-callbacks-ttl', '30s', '-callbacks-upstream-timeout', '300ms'],
      tuning: { breakerThreshold: 5 },
    });
    const ids = range(1, 30);
    assert.equal((await callbacks.post({ object_ids: ids })).status, 200);
    await waitFor('the breaker to open', () => callbacks.service.breakerState === 'open');
    assert.equal(((await (await fetch(`${callbacks.url}/`)).json()) as { breaker: string }).breaker, 'open');
    upstream.behaviour.mode = 'normal';
    await processed(callbacks);
    assert.deepEqual(await storedIds(callbacks), evens(ids));
    assert.equal(callbacks.service.breakerState, 'closed');
    const text = await (await fetch(`${callbacks.url}/metrics`)).text();
    for (const state of ['open', 'half_open', 'closed']) {
      assert.match(
        text,
        new RegExp(`greenlight_callback_breaker_transitions_total\\{state="${state}"\\} [1-9]`),
      );
    }
    assert.ok((await metric(callbacks.url, 'greenlight_callback_lookups_total{outcome="timeout"}')) > 0);
    assert.ok(
      callbacks.lines.some((l) => l.msg === 'upstream circuit breaker changed' && l.state === 'open'),
    );
  });
});

describe('load and sharing', async () => {
  test('when 5,000 lookups are in flight, then a callback is still answered in well under 100 ms', async () => {
    const { url } = await startUpstream({ minDelayMs: 8_000, maxDelayMs: 9_000 });
    const callbacks = await startTestCallbacks(url, {
      flags: [
        '-callbacks-concurrency',
        '5000',
        '-callbacks-ttl',
        '30s',
        '-callbacks-upstream-timeout',
        '10s',
      ],
    });
    await Promise.all(
      range(0, 24).map((i) => callbacks.post({ object_ids: range(10_000 + i * 200, 10_199 + i * 200) })),
    );
    await waitFor('5,000 lookups in flight', () => callbacks.service.lookupsInFlight >= 5_000, 20_000);
    const timings: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const res = await callbacks.post({ object_ids: range(1, 199) });
      timings.push(performance.now() - started);
      assert.equal(res.status, 200);
    }
    timings.sort((a, b) => a - b);
    assert.ok((timings[4] as number) < 100, `median ${timings[4]} ms`);
    assert.ok((timings[9] as number) < 1_000, `slowest ${timings[9]} ms: past the client's timeout`);
    assert.equal(callbacks.service.lookupsInFlight >= 5_000, true);
  });

  test('when the waiting callbacks hold many ids each, then a claim takes them only while their ids fit, and twice the concurrency runs', async () => {
    const { upstream, url } = await startUpstream({ minDelayMs: 5_000, maxDelayMs: 5_000 });
    // 20 callbacks of 2,000 distinct ids, as 20 valid POSTs leave them while the service is busy.
    const dsn = await createTestDatabase();
    const db = new pg.Client({ connectionString: dsn });
    await db.connect();
    await db.query(
      `INSERT INTO callback_batches (object_ids)
       SELECT array(SELECT generate_series(i * 2000 + 1, (i + 1) * 2000))::bigint[] FROM generate_series(0, 19) AS i`,
    );
    await db.end();
    const callbacks = await startTestCallbacks(url, {
      dsn,
      flags: ['-callbacks-concurrency', '5', '-callbacks-ttl', '30s', '-callbacks-upstream-timeout', '10s'],
    });
    await waitFor('lookups to start', () => callbacks.service.lookupsInFlight > 0);
    // Several polls: no claim adds to them while more ids wait than may run and two callbacks
    // wait for their turn; the first claim took what fits in 10,000 ids.
    await sleep(500);
    const held = callbacks.service.lookupsInFlight;
    assert.ok(held <= 10_000, `${held} ids held`);
    assert.equal(held % 2_000, 0, 'whole callbacks');
    assert.ok(upstream.totalRequests <= 10, `${upstream.totalRequests} lookups started`);
  });

  test('when a callback of many ids is being looked up, then one that arrives after it is looked up in turn beside it, not after it', async () => {
    const { upstream, url } = await startUpstream({ minDelayMs: 200, maxDelayMs: 200 });
    const callbacks = await startTestCallbacks(url, {
      flags: ['-callbacks-concurrency', '5', '-callbacks-ttl', '60s', '-callbacks-upstream-timeout', '5s'],
    });
    // 3,000 lookups at 5 at a time and 200 ms each: ten minutes on their own.
    assert.equal((await callbacks.post({ object_ids: range(10_001, 13_000) })).status, 200);
    await waitFor('its lookups to start', () => upstream.totalRequests > 0);
    assert.equal((await callbacks.post({ object_ids: range(1, 6) })).status, 200);
    const arrived = performance.now();
    await waitFor(
      'the later callback to be stored',
      async () => (await storedIds(callbacks)).includes(6),
      10_000,
    );
    assert.ok(
      performance.now() - arrived < 5_000,
      `stored after ${Math.round(performance.now() - arrived)} ms`,
    );
    assert.deepEqual(
      (await storedIds(callbacks)).filter((id) => id <= 6),
      [2, 4, 6],
    );
    assert.ok(upstream.totalRequests < 1_000, 'the large callback is still being looked up');
  });

  test('when lookups outlast the lease, then the lease is renewed and the other instance does not take the callback', async () => {
    const { upstream, url } = await startUpstream({ minDelayMs: 2_500, maxDelayMs: 2_600 });
    const flags = ['-callbacks-ttl', '30s', '-callbacks-lease', '1s', '-callbacks-upstream-timeout', '5s'];
    const first = await startTestCallbacks(url, { flags });
    const second = await startTestCallbacks(url, { dsn: first.dsn, flags });
    assert.equal((await first.post({ object_ids: range(1, 6) })).status, 200);
    await processed(first);
    for (const id of range(1, 6)) assert.equal(upstream.requests.get(id), 1, `id ${id}`);
    assert.deepEqual(await storedIds(second), [2, 4, 6]);
  });

  test('when two instances share one database, then they split the callbacks and no id is requested twice', async () => {
    const { upstream, url } = await startUpstream({ minDelayMs: 50, maxDelayMs: 100 });
    // A lease long enough that a stall of this busy machine cannot pass a callback on. An
    // instance claims up to 50 callbacks at a time and then waits while it has more than
    // twice its concurrency of ids in flight: 120 callbacks of 10 ids cannot all go to one.
    const flags = ['-callbacks-ttl', '30s', '-callbacks-lease', '20s', '-callbacks-concurrency', '100'];
    const first = await startTestCallbacks(url, { flags });
    const second = await startTestCallbacks(url, { dsn: first.dsn, flags });
    const wave = range(0, 119).map((i) => ({ object_ids: range(1_000 + i * 10, 1_009 + i * 10) }));
    await Promise.all(wave.map((body, i) => (i % 2 === 0 ? first : second).post(body)));
    await processed(first);
    const all = wave.flatMap((b) => b.object_ids);
    for (const id of all) assert.equal(upstream.requests.get(id), 1, `id ${id}`);
    assert.deepEqual(await storedIds(first), evens(all));
    const online = async (c: typeof first) =>
      metric(c.url, 'greenlight_callback_lookups_total{outcome="online"}');
    const [a, b] = [await online(first), await online(second)];
    assert.ok(a > 0 && b > 0, `lookups split ${a} / ${b}`);
    assert.equal(a + b, all.length / 2 + (all.length % 2));
  });
});

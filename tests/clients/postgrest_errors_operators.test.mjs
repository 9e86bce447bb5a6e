// postgrest-js and supabase-js, unmodified: PostgREST 13's error codes and statuses, every
// filter operator, JSON paths (filters, order, select), and supabase-js over /rest/v1 with the token as its key.
// Env: ROWCAST_URL, ROWCAST_TOKEN (tenant A user), ROWCAST_TENANT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

const tenant = { 'X-Tenant-ID': process.env.ROWCAST_TENANT };
const pg = new PostgrestClient(`${process.env.ROWCAST_URL}/rest`, {
  headers: { Authorization: `Bearer ${process.env.ROWCAST_TOKEN}`, ...tenant },
});
// supabase-js with the user's JWT as its key: it sends `apikey` and `Authorization`.
const supabase = createClient(process.env.ROWCAST_URL, process.env.ROWCAST_TOKEN, {
  global: { headers: tenant },
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: { transport: WebSocket },
});
const clients = [['postgrest-js', pg], ['supabase-js', supabase]];

test('seed', async () => {
  const rows = [
    { phone: '+15550100001', first_name: 'Ann', last_name: 'Lee', attributes: { plan: 'pro', score: 9, bio: 'quick brown foxes' } },
    { phone: '+15550100002', first_name: 'Bob', attributes: { plan: 'free', score: 3, bio: 'lazy dogs sleep' } },
    { phone: '+15550100003', first_name: 'alice', last_name: 'Lee', attributes: { plan: 'pro', score: 5 } },
  ];
  const { error, status } = await pg.from('contacts').insert(rows);
  assert.equal(error, null);
  assert.equal(status, 201);
});

for (const [name, c] of clients) {
  const names = (r) => {
    assert.equal(r.error, null, JSON.stringify(r.error));
    return r.data.map((x) => x.first_name).sort();
  };

  test(`${name}: PostgREST error codes and statuses`, async () => {
    const single = await c.from('contacts').select('id').single();
    assert.equal(single.status, 406);
    assert.equal(single.error.code, 'PGRST116');
    const table = await c.from('nope').select('*');
    assert.equal(table.status, 404);
    assert.equal(table.error.code, 'PGRST205');
    const fn = await c.rpc('nope', {});
    assert.equal(fn.status, 404);
    assert.equal(fn.error.code, 'PGRST202');
    const dup = await c.from('contacts').insert({ phone: '+15550100001' });
    assert.equal(dup.status, 409);
    assert.equal(dup.error.code, '23505');
    const check = await c.from('contacts').insert({ phone: 'not a phone' });
    assert.equal(check.status, 400);
    assert.equal(check.error.code, '23514');
    const column = await c.from('contacts').select('nope');
    assert.equal(column.status, 400);
    assert.equal(column.error.code, '42703');
    const bodyKey = await c.from('contacts').insert({ phone: '+15550100009', nope: 1 });
    assert.equal(bodyKey.status, 400);
    assert.equal(bodyKey.error.code, 'PGRST204');
    const wrongType = await c.from('contacts').select('id').eq('id', 'not-a-uuid');
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.error.code, '22P02');
    const operator = await c.from('contacts').select('id').contains('first_name', ['a']);
    assert.equal(operator.status, 404);
    assert.equal(operator.error.code, '42883');
    const noFilter = await c.from('contacts').update({ last_name: 'Z' });
    assert.equal(noFilter.status, 400);
    assert.equal(noFilter.error.code, '21000');
    const range = await c.from('contacts').select('id').range(5, 2);
    assert.equal(range.status, 416);
    assert.equal(range.error.code, 'PGRST103');
    const untouched = await c.from('contacts').select('id').eq('last_name', 'Z');
    assert.deepEqual(untouched.data, [], 'nothing written by the refused requests');
  });

  test(`${name}: every operator`, async () => {
    const q = () => c.from('contacts').select('first_name');
    assert.deepEqual(names(await q().match({ last_name: 'Lee' })), ['Ann', 'alice']);
    assert.deepEqual(names(await q().filter('first_name', 'match', '^A')), ['Ann']);
    assert.deepEqual(names(await q().filter('first_name', 'imatch', '^a')), ['Ann', 'alice']);
    assert.deepEqual(names(await q().filter('last_name', 'isdistinct', 'Lee')), ['Bob']);
    assert.deepEqual(names(await q().likeAnyOf('first_name', ['A*', 'B*'])), ['Ann', 'Bob']);
    assert.deepEqual(names(await q().ilikeAllOf('first_name', ['a*', '*e'])), ['alice']);
    assert.deepEqual(names(await q().not('first_name', 'ilike', 'a*')), ['Bob']);
    assert.deepEqual(names(await q().or('first_name.eq.Bob,and(last_name.eq.Lee,first_name.like.a*)')), ['Bob', 'alice']);
    assert.deepEqual(names(await q().in('first_name', ['Ann', 'Bob'])), ['Ann', 'Bob']);
    assert.deepEqual(names(await q().is('last_name', null)), ['Bob']);
    assert.deepEqual(names(await q().textSearch('first_name', 'bob')), ['Bob']);
    assert.deepEqual(names(await q().textSearch('attributes->>bio', 'fox', { config: 'english' })), ['Ann']);
    assert.deepEqual(names(await q().textSearch('attributes->>bio', 'lazy dogs', { type: 'plain', config: 'english' })), ['Bob']);
    assert.deepEqual(names(await q().textSearch('attributes->>bio', 'brown foxes', { type: 'phrase' })), ['Ann']);
    assert.deepEqual(names(await q().textSearch('attributes->>bio', '"lazy dogs" or quick', { type: 'websearch' })), ['Ann', 'Bob']);
    assert.deepEqual(names(await q().contains('attributes', { plan: 'pro' })), ['Ann', 'alice']);
    assert.deepEqual(names(await q().containedBy('attributes', { plan: 'free', score: 3, bio: 'lazy dogs sleep', x: 1 })), ['Bob']);
  });

  test(`${name}: JSON paths in filters and order`, async () => {
    const q = () => c.from('contacts').select('first_name');
    assert.deepEqual(names(await q().eq('attributes->>plan', 'pro')), ['Ann', 'alice']);
    assert.deepEqual(names(await q().gt('attributes->score', 4)), ['Ann', 'alice']);
    const ordered = await q().order('attributes->score', { ascending: false });
    assert.equal(ordered.error, null);
    assert.deepEqual(ordered.data.map((r) => r.first_name), ['Ann', 'alice', 'Bob']);
    const bad = await q().eq('attributes->', 1);
    assert.equal(bad.status, 400);
    assert.equal(bad.error.code, 'PGRST100');
  });

  test(`${name}: JSON paths in select`, async () => {
    const r = await c.from('contacts').select('first_name, attributes->>plan, s:attributes->score, attributes->>score::int').order('first_name');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(r.data, [
      { first_name: 'Ann', plan: 'pro', s: 9, score: 9 },
      { first_name: 'Bob', plan: 'free', s: 3, score: 3 },
      { first_name: 'alice', plan: 'pro', s: 5, score: 5 },
    ]);
    const bad = await c.from('contacts').select('first_name->x');
    assert.equal(bad.status, 404);
    assert.equal(bad.error.code, '42883');
  });
}

// postgrest-js and supabase-js, unmodified: CSV, counts (exact, planned, estimated), rpc over
// GET with arguments in the query, and select/filters/order/limit on set-returning results.
// Env: ROWCAST_URL, ROWCAST_TOKEN (tenant A user), ROWCAST_TENANT. The server has
// rpc.contacts_from(p_prefix text) RETURNS SETOF contacts (STABLE) and 3 contacts in tenant A
// (Ann, Bob, Cy) plus Bea in tenant B.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

const tenant = { 'X-Tenant-ID': process.env.ROWCAST_TENANT };
const pg = new PostgrestClient(`${process.env.ROWCAST_URL}/rest`, {
  headers: { Authorization: `Bearer ${process.env.ROWCAST_TOKEN}`, ...tenant },
});
const supabase = createClient(process.env.ROWCAST_URL, process.env.ROWCAST_TOKEN, {
  global: { headers: tenant },
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: { transport: WebSocket },
});

for (const [name, c] of [['postgrest-js', pg], ['supabase-js', supabase]]) {
  test(`${name}: csv`, async () => {
    const r = await c.from('contacts').select('first_name').order('first_name').csv();
    assert.equal(r.error, null);
    assert.equal(r.data, 'first_name\nAnn\nBob\nCy');
  });

  test(`${name}: counts`, async () => {
    const exact = await c.from('contacts').select('id', { count: 'exact' }).limit(1);
    assert.equal(exact.error, null);
    assert.equal(exact.count, 3);
    assert.equal(exact.status, 206);
    const estimated = await c.from('contacts').select('id', { count: 'estimated', head: true });
    assert.equal(estimated.error, null);
    assert.equal(estimated.count, 3);
    const planned = await c.from('contacts').select('id', { count: 'planned', head: true });
    assert.equal(planned.error, null);
    assert.equal(typeof planned.count, 'number');
  });

  test(`${name}: rpc over GET and shaped set results`, async () => {
    const got = await c.rpc('contacts_from', { p_prefix: '+1555' }, { get: true }).select('first_name').neq('first_name', 'Bob').order('first_name', { ascending: false });
    assert.equal(got.error, null, JSON.stringify(got.error));
    assert.deepEqual(got.data, [{ first_name: 'Cy' }, { first_name: 'Ann' }]);
    const posted = await c.rpc('contacts_from', {}, { count: 'exact' }).select('first_name').eq('first_name', 'Ann');
    assert.equal(posted.error, null, JSON.stringify(posted.error));
    assert.deepEqual(posted.data, [{ first_name: 'Ann' }]);
    assert.equal(posted.count, 1);
    const one = await c.rpc('contacts_from', {}, { get: true }).select('first_name').eq('first_name', 'Cy').single();
    assert.equal(one.error, null);
    assert.deepEqual(one.data, { first_name: 'Cy' });
    const volatile = await c.rpc('campaign_start', { p_campaign_id: '00000000-0000-0000-0000-000000000000' }, { get: true });
    assert.equal(volatile.status, 405);
    assert.equal(volatile.error.code, 'PGRST101');
  });
}

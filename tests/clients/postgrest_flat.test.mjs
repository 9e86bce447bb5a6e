// postgrest-js, unmodified, against rowcast's /rest: flat reads and writes.
// Env: ROWCAST_URL (http://127.0.0.1:port), ROWCAST_TOKEN (tenant A user), ROWCAST_TENANT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';

const client = new PostgrestClient(`${process.env.ROWCAST_URL}/rest`, {
  headers: { Authorization: `Bearer ${process.env.ROWCAST_TOKEN}`, 'X-Tenant-ID': process.env.ROWCAST_TENANT },
});

test('insert returns the row, select filters and orders it', async () => {
  const inserted = await client.from('contacts').insert({ phone: '+15551230001', first_name: 'Zoe' }).select('id, first_name').single();
  assert.equal(inserted.error, null);
  assert.equal(inserted.status, 201);
  assert.equal(inserted.data.first_name, 'Zoe');

  const read = await client.from('contacts').select('first_name').eq('id', inserted.data.id);
  assert.equal(read.error, null);
  assert.deepEqual(read.data, [{ first_name: 'Zoe' }]);
});

test('update and delete through filters', async () => {
  const { data } = await client.from('contacts').insert({ phone: '+15551230002', first_name: 'Yan' }).select('id').single();
  const updated = await client.from('contacts').update({ first_name: 'Yannick' }).eq('id', data.id).select('first_name');
  assert.equal(updated.error, null);
  assert.deepEqual(updated.data, [{ first_name: 'Yannick' }]);
  const deleted = await client.from('contacts').delete().eq('id', data.id);
  assert.equal(deleted.error, null);
  const after = await client.from('contacts').select('id').eq('id', data.id);
  assert.deepEqual(after.data, []);
});

// postgrest-js, unmodified, against rowcast's /rest: resource embedding and aggregates.
// Env: ROWCAST_URL, ROWCAST_TOKEN (tenant A user), ROWCAST_TENANT; the data is seeded by
// tests/api/clients_embed.rs (tests/api/rest_embed.rs `seed`): contacts Ann, Bob, Cid (and a
// soft-deleted Del); groups Friends (Ann, Bob, Del) and Empty; template T; campaigns C1
// (Friends, T, 5 recipients) and C2 (7 recipients).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PostgrestClient } from '@supabase/postgrest-js';

const client = new PostgrestClient(`${process.env.ROWCAST_URL}/rest`, {
  headers: { Authorization: `Bearer ${process.env.ROWCAST_TOKEN}`, 'X-Tenant-ID': process.env.ROWCAST_TENANT },
});

test("select('*, groups(*)') embeds the many-to-one row", async () => {
  const { data, error, status } = await client.from('campaigns').select('*, groups(*)').eq('name', 'C1').single();
  assert.equal(error, null);
  assert.equal(status, 200);
  assert.equal(data.name, 'C1');
  assert.equal(data.groups.name, 'Friends');
  assert.equal(data.groups.id, data.group_id);
  const none = await client.from('campaigns').select('name, groups(name)').eq('name', 'C2');
  assert.deepEqual(none.data, [{ name: 'C2', groups: null }]);
});

test('many-to-many through the junction, with filters, order and limit on the embed', async () => {
  const { data, error } = await client
    .from('groups')
    .select('name, contacts(first_name)')
    .order('name')
    .order('first_name', { referencedTable: 'contacts', ascending: false });
  assert.equal(error, null);
  assert.deepEqual(data, [
    { name: 'Empty', contacts: [] },
    { name: 'Friends', contacts: [{ first_name: 'Bob' }, { first_name: 'Ann' }] },
  ]);
  const limited = await client
    .from('groups')
    .select('name, contacts(first_name)')
    .eq('name', 'Friends')
    .order('first_name', { referencedTable: 'contacts' })
    .limit(1, { referencedTable: 'contacts' });
  assert.deepEqual(limited.data, [{ name: 'Friends', contacts: [{ first_name: 'Ann' }] }]);
  const filtered = await client.from('groups').select('name, contacts(first_name)').eq('name', 'Friends').eq('contacts.first_name', 'Bob');
  assert.deepEqual(filtered.data, [{ name: 'Friends', contacts: [{ first_name: 'Bob' }] }]);
  const ored = await client
    .from('groups')
    .select('name, contacts(first_name)')
    .eq('name', 'Friends')
    .or('first_name.eq.Ann,first_name.eq.Cid', { referencedTable: 'contacts' });
  assert.deepEqual(ored.data, [{ name: 'Friends', contacts: [{ first_name: 'Ann' }] }]);
});

test('!inner, null filtering, aliases, hints, spreads and nesting', async () => {
  const inner = await client.from('campaigns').select('name, groups!inner(name)');
  assert.deepEqual(inner.data, [{ name: 'C1', groups: { name: 'Friends' } }]);
  const notNull = await client.from('campaigns').select('name, groups(name)').not('groups', 'is', null);
  assert.deepEqual(notNull.data, [{ name: 'C1', groups: { name: 'Friends' } }]);
  const isNull = await client.from('campaigns').select('name, groups(name)').is('groups', null);
  assert.deepEqual(isNull.data, [{ name: 'C2', groups: null }]);
  const aliased = await client.from('campaigns').select('name, grp:groups!campaigns_group_id_fkey(name)').eq('name', 'C1');
  assert.deepEqual(aliased.data, [{ name: 'C1', grp: { name: 'Friends' } }]);
  const spread = await client.from('campaigns').select('name, ...groups(group_name:name)').eq('name', 'C1');
  assert.deepEqual(spread.data, [{ name: 'C1', group_name: 'Friends' }]);
  const nested = await client
    .from('campaigns')
    .select('name, message_templates(name), groups(name, contacts(first_name))')
    .eq('name', 'C1')
    .order('first_name', { referencedTable: 'groups.contacts' });
  assert.deepEqual(nested.data, [
    { name: 'C1', message_templates: { name: 'T' }, groups: { name: 'Friends', contacts: [{ first_name: 'Ann' }, { first_name: 'Bob' }] } },
  ]);
});

test('aggregates, grouped and inside embeds', async () => {
  const count = await client.from('contacts').select('count()');
  assert.deepEqual(count.data, [{ count: 3 }]);
  const sums = await client.from('campaigns').select('total:total_recipients.sum(), most:total_recipients.max()');
  assert.deepEqual(sums.data, [{ total: 12, most: 7 }]);
  const grouped = await client.from('groups').select('name, contacts(count)').order('name');
  assert.deepEqual(grouped.data, [
    { name: 'Empty', contacts: [{ count: 0 }] },
    { name: 'Friends', contacts: [{ count: 2 }] },
  ]);
});

test('embeds in the representation of a write', async () => {
  const group = await client.from('groups').select('id').eq('name', 'Friends').single();
  const inserted = await client.from('campaigns').insert({ name: 'C9', group_id: group.data.id }).select('name, groups(name)').single();
  assert.equal(inserted.error, null);
  assert.equal(inserted.status, 201);
  assert.deepEqual(inserted.data, { name: 'C9', groups: { name: 'Friends' } });
});

test('unknown and ambiguous relationships answer PostgREST codes', async () => {
  const unknown = await client.from('campaigns').select('*, nope(*)');
  assert.equal(unknown.status, 400);
  assert.equal(unknown.error.code, 'PGRST200');
  assert.equal(unknown.error.message, "Could not find a relationship between 'campaigns' and 'nope' in the schema cache");
  const notEmbedded = await client.from('campaigns').select('*').eq('groups.name', 'x');
  assert.equal(notEmbedded.status, 400);
  assert.equal(notEmbedded.error.code, 'PGRST108');
});

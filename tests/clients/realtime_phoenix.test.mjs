// @supabase/realtime-js and supabase-js, unmodified, against rowcast's /realtime/v1/websocket.
// Env: ROWCAST_URL and ROWCAST_URL_B (two servers, one database), ROWCAST_SQL (POST a statement
// with RETURNING, run as the owner), TENANT_A, TENANT_B, TOKEN_USER_A, TOKEN_USER_A_FRESH,
// TOKEN_ADMIN_A, TOKEN_USER_B.
//
// "Never receives X" is proven without sleeping: a later marker the subscriber may see
// arrives first, and delivery is in commit order.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { RealtimeClient } from '@supabase/realtime-js';
import { createClient } from '@supabase/supabase-js';

const E = process.env;
const WAIT = 15000;
const clients = [];
after(() => Promise.all(clients.map((c) => c.disconnect())));

function client(url, token, tenant, opts = {}) {
  const c = new RealtimeClient(`${url.replace(/^http/, 'ws')}/realtime/v1`, {
    params: { apikey: token, tenant },
    transport: WebSocket,
    ...opts,
  });
  clients.push(c);
  return c;
}

function inbox() {
  const items = [];
  const waiters = [];
  return {
    items,
    push(x) {
      const w = waiters.shift();
      if (w) w(x);
      else items.push(x);
    },
    next(ms = WAIT) {
      if (items.length) return Promise.resolve(items.shift());
      return new Promise((resolve, reject) => {
        const waiter = (x) => {
          clearTimeout(timer);
          resolve(x);
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error('timed out waiting for a message'));
        }, ms);
        waiters.push(waiter);
      });
    },
  };
}

/// Messages up to and including the first one `pred` accepts.
async function until(box, pred) {
  const seen = [];
  for (;;) {
    const m = await box.next();
    seen.push(m);
    if (pred(m)) return seen;
  }
}

function subscribed(channel, statuses) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      statuses?.push({ status, err });
      if (status === 'SUBSCRIBED') resolve();
      else if (status !== 'CLOSED') reject(err ?? new Error(status));
    });
  });
}

function joinError(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'CHANNEL_ERROR') resolve(err);
      else if (status === 'SUBSCRIBED') reject(new Error('joined, but the join should have been refused'));
    });
  });
}

let phones = 0;
const phone = () => `+1555${String(Date.now() % 1000).padStart(3, '0')}${String(++phones).padStart(4, '0')}`;

async function rest(method, path, token, tenant, body) {
  const r = await fetch(`${E.ROWCAST_URL}/rest/${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      'X-Tenant-ID': tenant,
      'Content-Type': 'application/json',
      Prefer: 'return=representation',
    },
    body: body && JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function sql(statement) {
  const r = await fetch(E.ROWCAST_SQL, { method: 'POST', body: statement });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

const insertContact = (tenant, firstName) =>
  sql(`INSERT INTO contacts (tenant_id, phone, first_name) VALUES ('${tenant}', '${phone()}', '${firstName}') RETURNING *`).then((r) => r[0]);

function assertChange(change, type, table) {
  assert.equal(change.eventType, type);
  assert.equal(change.schema, 'public');
  assert.equal(change.table, table);
  assert.equal(change.errors, null);
  assert.ok(!Number.isNaN(Date.parse(change.commit_timestamp)), `commit_timestamp ${change.commit_timestamp}`);
  assert.ok(Math.abs(Date.now() - Date.parse(change.commit_timestamp)) < 60000, 'commit_timestamp is the commit time');
}

test('a filtered binding gets INSERT, UPDATE, soft delete (an UPDATE) and DELETE with exact payloads', { timeout: 30000 }, async () => {
  const rt = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const got = inbox();
  const ch = rt
    .channel('contacts-ann')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'contacts', filter: 'first_name=eq.Ann' }, (p) => got.push(p));
  await subscribed(ch);

  const [ann] = await rest('POST', 'contacts', E.TOKEN_USER_A, E.TENANT_A, { phone: phone(), first_name: 'Ann' });
  await rest('POST', 'contacts', E.TOKEN_USER_A, E.TENANT_A, { phone: phone(), first_name: 'Bob' });
  const inserted = await got.next();
  assertChange(inserted, 'INSERT', 'contacts');
  assert.deepEqual(inserted.new, ann);
  assert.deepEqual(inserted.old, {});

  const [updated] = await rest('PATCH', `contacts?id=eq.${ann.id}`, E.TOKEN_USER_A, E.TENANT_A, { last_name: 'Lee' });
  const update = await got.next();
  assertChange(update, 'UPDATE', 'contacts');
  assert.deepEqual(update.new, updated);
  assert.deepEqual(update.old, ann, 'old is the full previous row');

  await rest('DELETE', `contacts?id=eq.${ann.id}`, E.TOKEN_USER_A, E.TENANT_A);
  const soft = await got.next();
  assertChange(soft, 'UPDATE', 'contacts');
  assert.notEqual(soft.new.deleted_at, null);
  assert.equal(soft.old.deleted_at, null);
  assert.equal(soft.old.last_name, 'Lee');

  const [gone] = await sql(`DELETE FROM contacts WHERE id = '${ann.id}' RETURNING *`);
  const hard = await got.next();
  assertChange(hard, 'DELETE', 'contacts');
  assert.deepEqual(hard.new, {});
  assert.equal(hard.old.id, gone.id);
  assert.equal(hard.old.first_name, 'Ann');
  assert.equal(hard.old.last_name, 'Lee');
  assert.equal(got.items.length, 0, 'Bob never matched the filter');
});

test('serializer 1.0.0 delivers the same changes', { timeout: 30000 }, async () => {
  const rt = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A, { vsn: '1.0.0' });
  const got = inbox();
  await subscribed(rt.channel('v1').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'contacts' }, (p) => got.push(p)));
  const row = await insertContact(E.TENANT_A, 'Vee');
  const change = await got.next();
  assertChange(change, 'INSERT', 'contacts');
  assert.equal(change.new.id, row.id);
});

test('tenant isolation: B never sees A rows on the same topic, A does (pair)', { timeout: 30000 }, async () => {
  const a = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const b = client(E.ROWCAST_URL_B, E.TOKEN_USER_B, E.TENANT_B);
  const gotA = inbox();
  const gotB = inbox();
  await subscribed(a.channel('iso').on('postgres_changes', { event: '*', schema: 'public', table: 'contacts' }, (p) => gotA.push(p)));
  await subscribed(b.channel('iso').on('postgres_changes', { event: '*', schema: 'public', table: 'contacts' }, (p) => gotB.push(p)));
  const rowA = await insertContact(E.TENANT_A, 'OnlyA');
  await sql(`DELETE FROM contacts WHERE id = '${rowA.id}' RETURNING id`);
  const rowB = await insertContact(E.TENANT_B, 'MarkerB');
  assert.equal((await gotA.next()).new.id, rowA.id);
  assert.equal((await gotA.next()).old.id, rowA.id);
  const firstB = await gotB.next();
  assert.equal(firstB.new.id, rowB.id, 'the first change tenant B sees is its own marker');
});

test('role audience: tenant users never see webhook changes, deletes included; admins do (pair)', { timeout: 30000 }, async () => {
  const user = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const admin = client(E.ROWCAST_URL_B, E.TOKEN_ADMIN_A, E.TENANT_A);
  const err = await joinError(user.channel('hooks').on('postgres_changes', { event: '*', schema: 'public', table: 'webhooks' }, () => {}));
  assert.match(String(err?.message ?? err), /webhooks/);

  const gotUser = inbox();
  const gotAdmin = inbox();
  await subscribed(user.channel('everything').on('postgres_changes', { event: '*', schema: 'public' }, (p) => gotUser.push(p)));
  await subscribed(admin.channel('hooks').on('postgres_changes', { event: '*', schema: 'public', table: 'webhooks' }, (p) => gotAdmin.push(p)));

  const [hook] = await sql(`INSERT INTO webhooks (tenant_id, name, url) VALUES ('${E.TENANT_A}', 'h', 'https://example.test/h') RETURNING id`);
  await sql(`DELETE FROM webhooks WHERE id = '${hook.id}' RETURNING id`);
  const marker = await insertContact(E.TENANT_A, 'AfterHooks');

  const created = await gotAdmin.next();
  assertChange(created, 'INSERT', 'webhooks');
  assert.equal(created.new.id, hook.id);
  assert.ok(!('secret' in created.new), 'the secret is redacted');
  const deleted = await gotAdmin.next();
  assertChange(deleted, 'DELETE', 'webhooks');
  assert.equal(deleted.old.id, hook.id);
  assert.ok(!('secret' in deleted.old));

  const seen = await until(gotUser, (m) => m.table === 'contacts' && m.new.id === marker.id);
  assert.deepEqual(
    seen.filter((m) => m.table.startsWith('webhook')),
    [],
    'a tenant user gets no webhook change',
  );
});

test('access_token refresh keeps the channel; a token for another user closes it', { timeout: 30000 }, async () => {
  const rt = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const got = inbox();
  const statuses = inbox();
  const ch = rt.channel('refresh').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'contacts' }, (p) => got.push(p));
  await subscribed(ch, statuses);
  assert.equal((await statuses.next()).status, 'SUBSCRIBED');
  await rt.setAuth(E.TOKEN_USER_A_FRESH);
  const row = await insertContact(E.TENANT_A, 'Fresh');
  assert.equal((await got.next()).new.id, row.id);

  await rt.setAuth(E.TOKEN_USER_B);
  const closed = await statuses.next();
  assert.equal(closed.status, 'CLOSED');
});

test('phx_leave ends the channel; the socket and its other channels go on', { timeout: 30000 }, async () => {
  const rt = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const keep = inbox();
  const gone = inbox();
  const keepCh = rt.channel('keep').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'contacts' }, (p) => keep.push(p));
  const goneCh = rt.channel('gone').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'contacts' }, (p) => gone.push(p));
  await subscribed(keepCh);
  await subscribed(goneCh);
  assert.equal(await goneCh.unsubscribe(), 'ok');
  await insertContact(E.TENANT_A, 'AfterLeave');
  const marker = await insertContact(E.TENANT_A, 'Marker');
  await until(keep, (m) => m.new.id === marker.id);
  assert.equal(gone.items.length, 0, 'the left channel received nothing');
});

test('broadcast reaches the topic across instances, within the tenant; self and ack', { timeout: 30000 }, async () => {
  const a1 = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const a2 = client(E.ROWCAST_URL_B, E.TOKEN_ADMIN_A, E.TENANT_A);
  const b1 = client(E.ROWCAST_URL, E.TOKEN_USER_B, E.TENANT_B);
  const b2 = client(E.ROWCAST_URL_B, E.TOKEN_USER_B, E.TENANT_B);
  const [got1, got2, gotB2, gotSelf] = [inbox(), inbox(), inbox(), inbox()];
  const ch1 = a1.channel('room', { config: { broadcast: { ack: true } } }).on('broadcast', { event: '*' }, (p) => got1.push(p));
  const ch2 = a2.channel('room').on('broadcast', { event: '*' }, (p) => got2.push(p));
  const chB1 = b1.channel('room').on('broadcast', { event: '*' }, () => {});
  const chB2 = b2.channel('room').on('broadcast', { event: '*' }, (p) => gotB2.push(p));
  const echo = a1.channel('echo', { config: { broadcast: { self: true } } }).on('broadcast', { event: 'ping' }, (p) => gotSelf.push(p));
  for (const ch of [ch1, ch2, chB1, chB2, echo]) await subscribed(ch);

  assert.equal(await ch1.send({ type: 'broadcast', event: 'shout', payload: { n: 1 } }), 'ok', 'ack');
  const heard = await got2.next();
  assert.equal(heard.type, 'broadcast');
  assert.equal(heard.event, 'shout');
  assert.deepEqual(heard.payload, { n: 1 });

  await ch2.send({ type: 'broadcast', event: 'reply', payload: { n: 2 } });
  const first = await got1.next();
  assert.equal(first.event, 'reply', 'without self, the sender does not hear itself');

  await chB1.send({ type: 'broadcast', event: 'marker', payload: {} });
  const firstB = await gotB2.next();
  assert.equal(firstB.event, 'marker', "tenant B's room never hears tenant A's messages");

  await echo.send({ type: 'broadcast', event: 'ping', payload: { me: true } });
  assert.deepEqual((await gotSelf.next()).payload, { me: true }, 'self: true');
});

async function presenceUntil(box, channel, pred) {
  while (!pred(channel.presenceState())) await box.next();
  return channel.presenceState();
}

test('presence: state on join, diffs on track/untrack/leave, across instances', { timeout: 30000 }, async () => {
  const p1 = client(E.ROWCAST_URL, E.TOKEN_USER_A, E.TENANT_A);
  const p2 = client(E.ROWCAST_URL_B, E.TOKEN_ADMIN_A, E.TENANT_A);
  const [sync1, sync2] = [inbox(), inbox()];
  const ch1 = p1.channel('lobby', { config: { presence: { key: 'ann' } } }).on('presence', { event: 'sync' }, () => sync1.push(1));
  await subscribed(ch1);
  assert.equal(await ch1.track({ online_at: 1 }), 'ok');

  const ch2 = p2.channel('lobby', { config: { presence: { key: 'bob' } } }).on('presence', { event: 'sync' }, () => sync2.push(1));
  await subscribed(ch2);
  const state = await presenceUntil(sync2, ch2, (s) => s.ann);
  assert.equal(state.ann.length, 1);
  assert.equal(state.ann[0].online_at, 1);
  assert.ok(state.ann[0].presence_ref);

  assert.equal(await ch2.track({ online_at: 2 }), 'ok');
  await presenceUntil(sync1, ch1, (s) => s.bob?.[0]?.online_at === 2);
  assert.equal(await ch2.untrack(), 'ok');
  await presenceUntil(sync1, ch1, (s) => !s.bob);

  await p1.disconnect();
  await presenceUntil(sync2, ch2, (s) => !s.ann);
});

test('supabase-js: channel().on(postgres_changes).subscribe() against rowcast, as in docs/realtime.md', { timeout: 30000 }, async () => {
  const supabase = createClient(E.ROWCAST_URL, E.TOKEN_USER_A, {
    global: { headers: { 'X-Tenant-ID': E.TENANT_A } },
    realtime: { params: { tenant: E.TENANT_A }, transport: WebSocket },
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const got = inbox();
  const ch = supabase
    .channel('docs')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'contacts', filter: 'first_name=eq.Docs' }, (p) => got.push(p));
  await subscribed(ch);
  // (supabase.from() would call /rest/v1, which rowcast serves as /rest: write through REST directly.)
  const [data] = await rest('POST', 'contacts', E.TOKEN_USER_A, E.TENANT_A, { phone: phone(), first_name: 'Docs' });
  const change = await got.next();
  assert.deepEqual(change.new, data);
  await supabase.removeChannel(ch);
  await supabase.realtime.disconnect();
});

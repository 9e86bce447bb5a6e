// standardwebhooks (npm, pinned), unmodified, verifies deliveries rowcast actually sent.
// Env: ROWCAST_WEBHOOK_CASES — a JSON file of [{name, secret, body, headers, valid}] captured
// by a receiver in tests/api/webhooks.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Webhook } from 'standardwebhooks';

const cases = JSON.parse(readFileSync(process.env.ROWCAST_WEBHOOK_CASES, 'utf8'));

for (const c of cases) {
  test(`${c.name}: ${c.valid ? 'verifies' : 'is rejected'}`, () => {
    const wh = new Webhook(c.secret);
    if (c.valid) {
      const payload = wh.verify(c.body, c.headers);
      assert.equal(typeof payload.type, 'string');
      assert.equal(payload.seq > 0, true);
    } else {
      assert.throws(() => wh.verify(c.body, c.headers), /signature/i);
    }
  });
}

test('the cases were captured', () => {
  assert.ok(cases.length >= 4);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, route } from './policy.js';

test('healthy candidates first, in ring order', () => {
  const config = parseConfig('{"hedge_delay_ms": 50}');
  const candidate = (node, healthy) => ({ node, healthy, failureRatePermille: 0, latencyMs: 0 });
  const candidates = [candidate(4, false), candidate(2, true), candidate(7, false), candidate(1, true)];
  const facts = (method) => ({ method, idempotent: true });

  assert.deepEqual(route(config, facts('get'), candidates), { order: [2, 1, 4, 7], hedgeDelayMs: 50 });
  assert.deepEqual(route(config, facts('put'), candidates), { order: [2, 1, 4, 7], hedgeDelayMs: undefined });
  assert.deepEqual(route(config, facts('get'), []).order, []);

  assert.equal(parseConfig('{}').hedge_delay_ms, undefined);
  assert.throws(() => parseConfig('{"hedge_delay_ms": 0}'));
  assert.throws(() => parseConfig('{"hedge": 5}'));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, parseConfig } from './policy.js';

test('retries listed statuses and transient errors only', () => {
  const config = parseConfig('{"statuses": [503], "delay_ms": 10}');
  const get = { method: 'get', idempotent: true };
  const post = { method: 'post', idempotent: false };
  const failed = (result) => ({ node: 0, attempt: 1, result, elapsedMs: 5, retryAfterMs: undefined });
  const context = (deadlineRemainingMs) =>
    ({ budgetRemaining: 10, deadlineRemainingMs, maxAttempts: 3, candidates: [0, 1, 2] });
  const retry = { tag: 'retry', val: { delayMs: 10, target: { tag: 'next' } } };

  const unavailable = failed({ tag: 'status', val: 503 });
  assert.deepEqual(decide(config, get, unavailable, context(1000)), retry);
  assert.deepEqual(decide(config, get, failed({ tag: 'error', val: 'connect' }), context(1000)), retry);
  // Not listed, not transient, not idempotent, no time left.
  for (const [facts, outcome, left] of [
    [get, failed({ tag: 'status', val: 502 }), 1000],
    [get, failed({ tag: 'error', val: 'protocol' }), 1000],
    [post, unavailable, 1000],
    [get, unavailable, 10],
  ]) {
    assert.equal(decide(config, facts, outcome, context(left)).tag, 'give-up');
  }

  assert.deepEqual(parseConfig('{}').statuses, [502, 503, 504]);
  assert.throws(() => parseConfig('{"statuses": [404]}'));
  assert.throws(() => parseConfig('{"delay": 5}'));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, parseConfig } from './policy.js';

test('acknowledges at W acks and fails when out of reach', () => {
  const config = parseConfig('{}');
  const context = { replicas: [0, 1, 2], writeQuorum: 2, writeQuorumMin: 1, deadlineRemainingMs: 1000 };
  const acked = (node) => ({ node, result: { tag: 'acked', val: 204 }, elapsedMs: 3 });
  const failed = (node) =>
    ({ node, result: { tag: 'failed', val: { tag: 'error', val: 'timeout' } }, elapsedMs: 3 });

  assert.equal(decide(config, [acked(0)], context).tag, 'wait');
  assert.equal(decide(config, [acked(0), acked(2)], context).tag, 'acknowledge');
  assert.equal(decide(config, [failed(0), failed(1)], context).tag, 'fail');
  // Asking for all three: one failure is already too many.
  assert.equal(decide(parseConfig('{"acks": 3}'), [acked(0), failed(1)], context).tag, 'fail');

  assert.throws(() => parseConfig('{"acks": 0}'));
  assert.throws(() => parseConfig('{"quorum": 2}'));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, parseConfig } from './policy.js';

test('checkpoints every n records', () => {
  const config = parseConfig('{"every_records": 100}');
  const stats = (records) => ({
    recordsSinceCheckpoint: records,
    bytesSinceCheckpoint: records * 64n,
    msSinceCheckpoint: 1000n,
    totalBytes: 1n << 20n,
    oldestNeededLsn: 1n,
    reclaimableBytes: 0n,
  });

  assert.equal(decide(config, stats(0n)), 'none');
  assert.equal(decide(config, stats(99n)), 'none');
  assert.equal(decide(config, stats(100n)), 'checkpoint-and-compact');

  assert.equal(parseConfig('{}').every_records, 10000);
  assert.throws(() => parseConfig('{"every_records": 0}'));
  assert.throws(() => parseConfig('{"every": 5}'));
});

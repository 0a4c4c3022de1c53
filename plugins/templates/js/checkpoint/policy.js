// A checkpoint policy for levee: the `checkpoint-policy` world of
// wit/levee-policy.wit (its doc comments are the manual), built into a
// component by componentize-js (`npm run build`). `checkpoint` is what the
// component exports; `parseConfig` and `decide` are exported for
// policy.test.js (`node --test`).
//
// It checkpoints once `every_records` records were appended since the last
// checkpoint, and compacts the log with it (deleting the segments that
// checkpoint made unneeded), so the log does not grow without end.
//
// Config, every field optional: {"every_records": 10000}
//
// WIT values in JavaScript: records are objects with camelCase fields
// (the log statistics are u64, so BigInt), enums strings; `configure`
// reports an error by throwing a string.

const DEFAULTS = Object.freeze({ every_records: 10000 });

// The binding's `config`, validated; the error names the field at fault.
export function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw `invalid config: ${e.message}`;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw 'invalid config: expected a JSON object';
  }
  const config = { ...DEFAULTS };
  for (const [field, value] of Object.entries(raw)) {
    switch (field) {
      case 'every_records':
        if (!Number.isSafeInteger(value) || value < 1) {
          throw `config field \`every_records\`: ${JSON.stringify(value)} is not a whole number of at least 1`;
        }
        break;
      default:
        throw `config field \`${field}\`: unknown (expected every_records)`;
    }
    config[field] = value;
  }
  return Object.freeze(config);
}

// The policy itself, over the WIT values.
export function decide(config, stats) {
  return stats.recordsSinceCheckpoint >= BigInt(config.every_records)
    ? 'checkpoint-and-compact'
    : 'none';
}

// The configured policy: defaults until `configure` succeeds; a failed
// `configure` leaves it as it was.
let config = DEFAULTS;

export const checkpoint = {
  configure(text) {
    config = parseConfig(text);
  },
  decide(stats) {
    return decide(config, stats);
  },
};

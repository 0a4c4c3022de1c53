// A write policy for levee: the `write-policy` world of
// wit/levee-policy.wit (its doc comments are the manual), built into a
// component by componentize-js (`npm run build`). `write` is what the
// component exports; `parseConfig` and `decide` are exported for
// policy.test.js (`node --test`).
//
// It acknowledges a write once `acks` replicas stored it (by default the
// service's W; never fewer than its `write_quorum_min`, the floor the host
// holds anyway), fails it as soon as too few replicas are left to get
// there, and waits otherwise.
//
// Config, every field optional: {"acks": 2} (default: the service's W)
//
// WIT values in JavaScript: records are objects with camelCase fields,
// variants `{tag, val}`, enums strings; `configure` reports an error by
// throwing a string.

const ACKS_MAX = 64;
const DEFAULTS = Object.freeze({ acks: undefined });

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
      case 'acks':
        if (!Number.isInteger(value) || value < 1 || value > ACKS_MAX) {
          throw `config field \`acks\`: ${JSON.stringify(value)} is outside 1..=${ACKS_MAX}`;
        }
        break;
      default:
        throw `config field \`${field}\`: unknown (expected acks)`;
    }
    config[field] = value;
  }
  return Object.freeze(config);
}

// The policy itself, over the WIT values.
export function decide(config, results, context) {
  const needed = Math.max(config.acks ?? context.writeQuorum, context.writeQuorumMin);
  const acked = results.filter((result) => result.result.tag === 'acked').length;
  if (acked >= needed) return { tag: 'acknowledge' };
  const pending = Math.max(context.replicas.length - results.length, 0);
  if (acked + pending < needed) {
    return {
      tag: 'fail',
      val: `${acked} of the ${needed} acks needed, and ${pending} replica(s) left to answer`,
    };
  }
  return { tag: 'wait' };
}

// The configured policy: defaults until `configure` succeeds; a failed
// `configure` leaves it as it was.
let config = DEFAULTS;

export const write = {
  configure(text) {
    config = parseConfig(text);
  },
  // This policy needs no node table.
  setNodes(_nodes) {},
  decide(_facts, results, context) {
    return decide(config, results, context);
  },
};

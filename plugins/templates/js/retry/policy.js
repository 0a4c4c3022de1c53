// A retry policy for levee: the `retry-policy` world of
// wit/levee-policy.wit (its doc comments are the manual), built into a
// component by componentize-js (`npm run build`). `retry` is what the
// component exports; `parseConfig` and `decide` are exported for
// policy.test.js (`node --test`).
//
// After a failed attempt it retries on the next candidate, after
// `delay_ms`, when the upstream answered one of `statuses` or the attempt
// could not connect, timed out or was reset; it gives up on anything else,
// on a request that is not idempotent (it may have been applied), and when
// the delay would outlast the request's deadline. The host's own limits
// (attempts, retry budget, deadline) hold whatever it answers.
//
// Config, every field optional: {"statuses": [502, 503, 504], "delay_ms": 25}
//
// WIT values in JavaScript: records are objects with camelCase fields,
// variants `{tag, val}`, enums strings, u64 BigInt; `configure` reports an
// error by throwing a string.

const DELAY_MS_MAX = 60000;
const TRANSIENT_ERRORS = ['connect', 'timeout', 'reset'];
const DEFAULTS = Object.freeze({ statuses: [502, 503, 504], delay_ms: 25 });

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
      case 'statuses':
        // The host asks a retry policy about nothing but 429 and 5xx.
        if (!Array.isArray(value) ||
            !value.every((s) => s === 429 || (Number.isInteger(s) && s >= 500 && s <= 599))) {
          throw 'config field `statuses`: expected a list of 429 or 500..=599';
        }
        break;
      case 'delay_ms':
        if (!Number.isInteger(value) || value < 0 || value > DELAY_MS_MAX) {
          throw `config field \`delay_ms\`: ${JSON.stringify(value)} is outside 0..=${DELAY_MS_MAX}`;
        }
        break;
      default:
        throw `config field \`${field}\`: unknown (expected statuses, delay_ms)`;
    }
    config[field] = value;
  }
  return Object.freeze(config);
}

// The policy itself, over the WIT values.
export function decide(config, facts, outcome, context) {
  const giveUp = (reason) => ({ tag: 'give-up', val: reason });
  if (!facts.idempotent) return giveUp('request is not idempotent');
  const result = outcome.result;
  if (result.tag === 'status' && !config.statuses.includes(result.val)) {
    return giveUp(`status ${result.val} is not retried`);
  }
  if (result.tag === 'error' && !TRANSIENT_ERRORS.includes(result.val)) {
    return giveUp(`${result.val} error is not retried`);
  }
  if (config.delay_ms >= context.deadlineRemainingMs) {
    return giveUp(`a ${config.delay_ms} ms delay leaves no time before the deadline`);
  }
  return { tag: 'retry', val: { delayMs: config.delay_ms, target: { tag: 'next' } } };
}

// The configured policy: defaults until `configure` succeeds; a failed
// `configure` leaves it as it was.
let config = DEFAULTS;

export const retry = {
  configure(text) {
    config = parseConfig(text);
  },
  // This policy needs no node table.
  setNodes(_nodes) {},
  decide(facts, outcome, context) {
    return decide(config, facts, outcome, context);
  },
};

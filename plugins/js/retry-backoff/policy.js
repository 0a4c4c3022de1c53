// `retry-backoff-js`: the `retry-backoff` rules of crates/policy/src/retry.rs
// in JavaScript, built by scripts/build-plugins.sh (componentize-js) into
// plugins/dist/retry-backoff-js.wasm for the `retry-policy` world.
//
// With the same random value it decides exactly like the native policy:
// crates/plugin/tests/languages.rs checks that on a table and on generated
// inputs. Only the config's field names are its own (camelCase):
//
//   maxAttempts    attempts in total, the first included, 1..=10     (3)
//   baseDelayMs    backoff ceiling of the first retry, <= maxDelayMs (25)
//   maxDelayMs     largest backoff ceiling, <= 60000                (1000)
//   retryStatuses  statuses retried: 429 or 500..=599, <= 16 of them (502, 503, 504)
//   retryAfterMaxMs cap on a honoured Retry-After, <= 60000         (10000)
//   target         "next" or "same": where retries go after anything
//                  but a connect failure                             ("next")

import { randomU64 } from 'levee:policy/host@0.2.0';

// The host's own ceilings (crates/policy/src/limits.rs, retry.rs).
const MAX_ATTEMPTS_MAX = 10;
const RETRY_DELAY_MS_MAX = 60000;
const RETRY_STATUSES_MAX = 16;
const CONFIG_BYTES_MAX = 64 * 1024;

const DEFAULTS = Object.freeze({
  maxAttempts: 3,
  baseDelayMs: 25,
  maxDelayMs: 1000,
  retryStatuses: [502, 503, 504],
  retryAfterMaxMs: 10000,
  target: 'next',
});

// The configured policy; defaults until `configure` succeeds. A failed
// `configure` leaves it untouched.
let config = DEFAULTS;

function fieldError(field, problem) {
  return `config field \`${field}\`: ${problem}`;
}

function u32Field(field, value) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw fieldError(field, `${JSON.stringify(value)} is not an integer in 0..=4294967295`);
  }
  return value;
}

// Parses and validates a config, naming the field at fault. An unknown
// field is an error: a typo must not silently become a default.
function parseConfig(text) {
  if (text.length > CONFIG_BYTES_MAX) {
    throw `config is ${text.length} bytes, more than the ${CONFIG_BYTES_MAX} allowed`;
  }
  let raw;
  try {
    raw = text.trim() === '' ? null : JSON.parse(text);
  } catch (e) {
    throw `invalid config: ${e.message}`;
  }
  if (raw === null) return DEFAULTS;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw 'invalid config: expected a JSON object';
  }
  const next = { ...DEFAULTS };
  for (const [field, value] of Object.entries(raw)) {
    switch (field) {
      case 'maxAttempts':
      case 'baseDelayMs':
      case 'maxDelayMs':
      case 'retryAfterMaxMs':
        next[field] = u32Field(field, value);
        break;
      case 'retryStatuses':
        if (!Array.isArray(value)) throw fieldError(field, 'expected a list of statuses');
        if (value.length > RETRY_STATUSES_MAX) {
          throw fieldError(field, `${value.length} entries, more than ${RETRY_STATUSES_MAX}`);
        }
        for (const status of value) {
          // The host only consults a retry policy for 429 and 5xx.
          if (!(status === 429 || (Number.isInteger(status) && status >= 500 && status <= 599))) {
            throw fieldError(field, `${JSON.stringify(status)} is not 429 or 500..=599`);
          }
        }
        next[field] = value.slice();
        break;
      case 'target':
        if (value !== 'next' && value !== 'same') {
          throw fieldError(field, `${JSON.stringify(value)} is not "next" or "same"`);
        }
        next[field] = value;
        break;
      default:
        throw fieldError(field, 'unknown field (expected one of maxAttempts, baseDelayMs, ' +
          'maxDelayMs, retryStatuses, retryAfterMaxMs, target)');
    }
  }
  if (next.maxAttempts < 1 || next.maxAttempts > MAX_ATTEMPTS_MAX) {
    throw fieldError('maxAttempts', `${next.maxAttempts} is outside 1..=${MAX_ATTEMPTS_MAX}`);
  }
  if (next.maxDelayMs > RETRY_DELAY_MS_MAX) {
    throw fieldError('maxDelayMs', `${next.maxDelayMs} exceeds ${RETRY_DELAY_MS_MAX}`);
  }
  if (next.baseDelayMs > next.maxDelayMs) {
    throw fieldError('baseDelayMs', `${next.baseDelayMs} exceeds maxDelayMs ${next.maxDelayMs}`);
  }
  if (next.retryAfterMaxMs > RETRY_DELAY_MS_MAX) {
    throw fieldError('retryAfterMaxMs', `${next.retryAfterMaxMs} exceeds ${RETRY_DELAY_MS_MAX}`);
  }
  return Object.freeze(next);
}

// A delay uniform in [0, ceiling] from one random u64: the high 64 bits of
// random * (ceiling + 1), exactly as the native policy computes it (BigInt
// keeps all 128 bits).
function fullJitterMs(ceilingMs, random) {
  return Number((random * BigInt(ceilingMs + 1)) >> 64n);
}

// min(maxDelayMs, baseDelayMs * 2^(attempt-1)); 31 doublings already exceed
// every u32 ceiling.
function backoffCeilingMs(attempt) {
  const doublings = BigInt(Math.min(Math.max(attempt - 1, 0), 31));
  const ceiling = BigInt(config.baseDelayMs) << doublings;
  const max = BigInt(Math.min(config.maxDelayMs, RETRY_DELAY_MS_MAX));
  return Number(ceiling < max ? ceiling : max);
}

function giveUp(reason) {
  return { tag: 'give-up', val: reason };
}

function decide(facts, outcome, context) {
  // Called exactly once per decide, retry or not, so a seeded host replays
  // the native policy's random sequence.
  const random = randomU64();
  const result = outcome.result;
  const retryAfter = outcome.retryAfterMs;

  // Only transient failures are retried: connect, timeout, reset and the
  // configured statuses; 429 also when the upstream says when.
  if (result.tag === 'error') {
    if (result.val !== 'connect' && result.val !== 'timeout' && result.val !== 'reset') {
      return giveUp(`${result.val} error is not retryable`);
    }
  } else if (!config.retryStatuses.includes(result.val)) {
    if (result.val !== 429) return giveUp(`status ${result.val} is not retryable`);
    if (retryAfter === undefined || retryAfter === null) {
      return giveUp('status 429 without Retry-After is not retried');
    }
  }
  // A non-idempotent request that failed may have been applied: never again.
  if (!facts.idempotent) {
    return giveUp('request is not idempotent and has no idempotency-key');
  }
  // The attempt cap: ours, and the host's if lower.
  const maxAttempts = Math.min(config.maxAttempts, context.maxAttempts);
  if (outcome.attempt >= maxAttempts) {
    return giveUp(`attempt ${outcome.attempt} reached max attempts ${maxAttempts}`);
  }
  // Do not spend a retry the service's budget does not have.
  if (context.budgetRemaining === 0) return giveUp('retry budget exhausted');
  // Retry-After (429 and 503 only, RFC 9110) is honoured up to a cap: the
  // upstream knows when it can take traffic. Otherwise full jitter.
  let delayMs;
  if (result.tag === 'status' && (result.val === 429 || result.val === 503) &&
      retryAfter !== undefined && retryAfter !== null) {
    delayMs = Math.min(retryAfter, config.retryAfterMaxMs);
  } else {
    delayMs = fullJitterMs(backoffCeilingMs(outcome.attempt), random);
  }
  delayMs = Math.min(delayMs, RETRY_DELAY_MS_MAX);
  // Give up rather than sleep past the deadline.
  if (delayMs >= context.deadlineRemainingMs) {
    return giveUp(`delay ${delayMs} ms leaves no time before the deadline ` +
      `(${context.deadlineRemainingMs} ms left)`);
  }
  // After a connect failure the node is unreachable: always the next one.
  const target = result.tag === 'error' && result.val === 'connect' ? 'next' : config.target;
  return { tag: 'retry', val: { delayMs, target: { tag: target } } };
}

export const retry = {
  configure(text) {
    config = parseConfig(text);
  },
  // The policy needs no node table.
  setNodes(_nodes) {},
  decide,
};

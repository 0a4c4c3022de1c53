// A routing policy for levee: the `routing-policy` world of
// wit/levee-policy.wit (its doc comments are the manual), built into a
// component by componentize-js (`npm run build`). `routing` is what the
// component exports; `parseConfig` and `route` are exported for
// policy.test.js (`node --test`).
//
// It keeps the ring's order, healthy candidates first: the healthy ones in
// ring order, then the others in ring order (so a request still has
// somewhere to go when every candidate is down). With `hedge_delay_ms` set,
// a read (GET or HEAD) also goes to the next node if the first has not
// answered after that long.
//
// The plan depends only on the request facts and the candidates' order and
// `healthy` flags, so `configure` declares `cacheable-by-health-flags`: the
// host may reuse a plan without calling `route` again.
//
// Config, every field optional: {"hedge_delay_ms": 50} (no hedging without it)
//
// WIT values in JavaScript: records are objects with camelCase fields,
// variants `{tag, val}`, enums strings, an absent option `undefined`;
// `configure` reports an error by throwing a string.

const HEDGE_DELAY_MS_MAX = 60000;
const DEFAULTS = Object.freeze({ hedge_delay_ms: undefined });

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
      case 'hedge_delay_ms':
        if (!Number.isInteger(value) || value < 1 || value > HEDGE_DELAY_MS_MAX) {
          throw `config field \`hedge_delay_ms\`: ${JSON.stringify(value)} is outside 1..=${HEDGE_DELAY_MS_MAX}`;
        }
        break;
      default:
        throw `config field \`${field}\`: unknown (expected hedge_delay_ms)`;
    }
    config[field] = value;
  }
  return Object.freeze(config);
}

// The policy itself, over the WIT values.
export function route(config, facts, candidates) {
  const healthy = candidates.filter((candidate) => candidate.healthy);
  const unhealthy = candidates.filter((candidate) => !candidate.healthy);
  const read = facts.method === 'get' || facts.method === 'head';
  return {
    order: [...healthy, ...unhealthy].map((candidate) => candidate.node),
    hedgeDelayMs: read ? config.hedge_delay_ms : undefined,
  };
}

// The configured policy: defaults until `configure` succeeds; a failed
// `configure` leaves it as it was.
let config = DEFAULTS;

export const routing = {
  configure(text) {
    config = parseConfig(text);
    // True whatever the config: see the top of this file.
    return { cacheableByHealthFlags: true };
  },
  // This policy needs no node table (candidates come in ring order).
  setNodes(_nodes) {},
  route(facts, candidates) {
    return route(config, facts, candidates);
  },
};

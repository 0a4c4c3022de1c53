"""`retry-backoff-py`: the `retry-backoff` rules of crates/policy/src/retry.rs
in Python, built by scripts/build-plugins.sh (componentize-py) into
plugins/dist/retry-backoff-py.wasm for the `retry-policy` world.

With the same random value it decides exactly like the native policy:
crates/plugin/tests/languages.rs checks that on a table and on generated
inputs. Only the config's field names are its own (snake_case, shorter):

  attempts            attempts in total, the first included, 1..=10      (3)
  backoff_base_ms     backoff ceiling of the first retry,
                      <= backoff_cap_ms                                  (25)
  backoff_cap_ms      largest backoff ceiling, <= 60000                  (1000)
  statuses            statuses retried: 429 or 500..=599, <= 16 of them  ([502, 503, 504])
  retry_after_cap_ms  cap on a honoured Retry-After, <= 60000            (10000)
  retry_to            "next" or "same": where retries go after anything
                      but a connect failure                              ("next")
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.retry import (
    Decision_GiveUp,
    Decision_Retry,
    RetryPlan,
    Target_Next,
    Target_Same,
)
from wit_world.imports import host
from wit_world.imports.types import AttemptResult_Error, ErrorKind

# The host's own ceilings (crates/policy/src/limits.rs, retry.rs).
MAX_ATTEMPTS_MAX = 10
RETRY_DELAY_MS_MAX = 60_000
RETRY_STATUSES_MAX = 16
CONFIG_BYTES_MAX = 64 * 1024
U32_MAX = 2**32 - 1

DEFAULTS = {
    "attempts": 3,
    "backoff_base_ms": 25,
    "backoff_cap_ms": 1_000,
    "statuses": (502, 503, 504),
    "retry_after_cap_ms": 10_000,
    "retry_to": "next",
}
U32_FIELDS = ("attempts", "backoff_base_ms", "backoff_cap_ms", "retry_after_cap_ms")
RETRYABLE_ERRORS = (ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.RESET)


class ConfigError(Exception):
    pass


def field_error(field, problem):
    return ConfigError(f"config field `{field}`: {problem}")


def is_u32(value):
    # bool is an int in Python; a config saying `true` is a mistake.
    return type(value) is int and 0 <= value <= U32_MAX


def parse_config(text):
    """The config as a dict, validated; the error names the field at fault.
    An unknown field is an error: a typo must not silently become a default."""
    if len(text.encode()) > CONFIG_BYTES_MAX:
        raise ConfigError(f"config is {len(text.encode())} bytes, more than the {CONFIG_BYTES_MAX} allowed")
    try:
        raw = None if text.strip() == "" else json.loads(text)
    except ValueError as e:
        raise ConfigError(f"invalid config: {e}")
    if raw is None:
        return dict(DEFAULTS)
    if not isinstance(raw, dict):
        raise ConfigError("invalid config: expected a JSON object")
    config = dict(DEFAULTS)
    for field, value in raw.items():
        if field in U32_FIELDS:
            if not is_u32(value):
                raise field_error(field, f"{json.dumps(value)} is not an integer in 0..={U32_MAX}")
        elif field == "statuses":
            if not isinstance(value, list):
                raise field_error(field, "expected a list of statuses")
            if len(value) > RETRY_STATUSES_MAX:
                raise field_error(field, f"{len(value)} entries, more than {RETRY_STATUSES_MAX}")
            for status in value:
                # The host only consults a retry policy for 429 and 5xx.
                if not (type(status) is int and (status == 429 or 500 <= status <= 599)):
                    raise field_error(field, f"{json.dumps(status)} is not 429 or 500..=599")
            value = tuple(value)
        elif field == "retry_to":
            if value not in ("next", "same"):
                raise field_error(field, f'{json.dumps(value)} is not "next" or "same"')
        else:
            raise field_error(field, "unknown field (expected one of " + ", ".join(DEFAULTS) + ")")
        config[field] = value
    if not 1 <= config["attempts"] <= MAX_ATTEMPTS_MAX:
        raise field_error("attempts", f"{config['attempts']} is outside 1..={MAX_ATTEMPTS_MAX}")
    if config["backoff_cap_ms"] > RETRY_DELAY_MS_MAX:
        raise field_error("backoff_cap_ms", f"{config['backoff_cap_ms']} exceeds {RETRY_DELAY_MS_MAX}")
    if config["backoff_base_ms"] > config["backoff_cap_ms"]:
        raise field_error(
            "backoff_base_ms",
            f"{config['backoff_base_ms']} exceeds backoff_cap_ms {config['backoff_cap_ms']}",
        )
    if config["retry_after_cap_ms"] > RETRY_DELAY_MS_MAX:
        raise field_error("retry_after_cap_ms", f"{config['retry_after_cap_ms']} exceeds {RETRY_DELAY_MS_MAX}")
    return config


# The configured policy; defaults until `configure` succeeds. A failed
# `configure` leaves it untouched.
CONFIG = dict(DEFAULTS)


def full_jitter_ms(ceiling_ms, random):
    """A delay uniform in [0, ceiling_ms] from one random u64: the high 64
    bits of random * (ceiling_ms + 1), as the native policy computes it."""
    return (random * (ceiling_ms + 1)) >> 64


def backoff_ceiling_ms(attempt):
    """min(backoff_cap_ms, backoff_base_ms * 2^(attempt-1)); 31 doublings
    already exceed every u32 ceiling."""
    doublings = min(max(attempt - 1, 0), 31)
    cap = min(CONFIG["backoff_cap_ms"], RETRY_DELAY_MS_MAX)
    return min(CONFIG["backoff_base_ms"] << doublings, cap)


def plan(facts, outcome, context, random):
    """A RetryPlan, or the give-up reason as a string."""
    result = outcome.result
    retry_after = outcome.retry_after_ms
    # Only transient failures are retried: connect, timeout, reset and the
    # configured statuses; 429 also when the upstream says when.
    if isinstance(result, AttemptResult_Error):
        if result.value not in RETRYABLE_ERRORS:
            return f"{result.value.name.lower()} error is not retryable"
        status = None
    else:
        status = result.value
        if status not in CONFIG["statuses"]:
            if status != 429:
                return f"status {status} is not retryable"
            if retry_after is None:
                return "status 429 without Retry-After is not retried"
    # A non-idempotent request that failed may have been applied: never again.
    if not facts.idempotent:
        return "request is not idempotent and has no idempotency-key"
    # The attempt cap: ours, and the host's if lower.
    max_attempts = min(CONFIG["attempts"], context.max_attempts)
    if outcome.attempt >= max_attempts:
        return f"attempt {outcome.attempt} reached max attempts {max_attempts}"
    # Do not spend a retry the service's budget does not have.
    if context.budget_remaining == 0:
        return "retry budget exhausted"
    # Retry-After (429 and 503 only, RFC 9110) is honoured up to a cap: the
    # upstream knows when it can take traffic. Otherwise full jitter.
    if status in (429, 503) and retry_after is not None:
        delay_ms = min(retry_after, CONFIG["retry_after_cap_ms"])
    else:
        delay_ms = full_jitter_ms(backoff_ceiling_ms(outcome.attempt), random)
    delay_ms = min(delay_ms, RETRY_DELAY_MS_MAX)
    # Give up rather than sleep past the deadline.
    if delay_ms >= context.deadline_remaining_ms:
        return (
            f"delay {delay_ms} ms leaves no time before the deadline "
            f"({context.deadline_remaining_ms} ms left)"
        )
    # After a connect failure the node is unreachable: always the next one.
    if status is None and result.value == ErrorKind.CONNECT or CONFIG["retry_to"] == "next":
        target = Target_Next()
    else:
        target = Target_Same()
    return RetryPlan(delay_ms=delay_ms, target=target)


class Retry(exports.Retry):
    def configure(self, config):
        global CONFIG
        try:
            CONFIG = parse_config(config)
        except ConfigError as e:
            raise Err(str(e))

    def set_nodes(self, nodes):
        # The policy needs no node table.
        pass

    def decide(self, facts, outcome, context):
        # Called exactly once per decide, retry or not, so a seeded host
        # replays the native policy's random sequence.
        random = host.random_u64()
        decided = plan(facts, outcome, context, random)
        if isinstance(decided, str):
            return Decision_GiveUp(decided)
        return Decision_Retry(decided)

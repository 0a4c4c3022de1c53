"""The decisions of a retry policy for levee, in plain Python: app.py hands
them levee's calls (the `retry-policy` world of wit/levee-policy.wit, whose
doc comments are the manual), test_policy.py tests them.

After a failed attempt it retries on the next candidate, after `delay_ms`,
when the upstream answered one of `statuses` or the attempt could not
connect, timed out or was reset; it gives up on anything else, on a request
that is not idempotent (it may have been applied), and when the delay would
outlast the request's deadline. The host's own limits (attempts, retry
budget, deadline) hold whatever it answers.

Config, every field optional: {"statuses": [502, 503, 504], "delay_ms": 25}
"""

import json

DELAY_MS_MAX = 60_000
TRANSIENT_ERRORS = ("connect", "timeout", "reset")
DEFAULTS = {"statuses": (502, 503, 504), "delay_ms": 25}


class ConfigError(Exception):
    pass


def parse_config(text):
    """The binding's `config`, validated; the error names the field at fault."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"invalid config: {e}")
    if not isinstance(raw, dict):
        raise ConfigError("invalid config: expected a JSON object")
    config = dict(DEFAULTS)
    for field, value in raw.items():
        if field == "statuses":
            # The host asks a retry policy about nothing but 429 and 5xx.
            if not isinstance(value, list) or not all(
                type(status) is int and (status == 429 or 500 <= status <= 599) for status in value
            ):
                raise ConfigError("config field `statuses`: expected a list of 429 or 500..=599")
            value = tuple(value)
        elif field == "delay_ms":
            if type(value) is not int or not 0 <= value <= DELAY_MS_MAX:
                raise ConfigError(f"config field `delay_ms`: {json.dumps(value)} is outside 0..={DELAY_MS_MAX}")
        else:
            raise ConfigError(f"config field `{field}`: unknown (expected statuses, delay_ms)")
        config[field] = value
    return config


def decide(config, idempotent, status, error, deadline_remaining_ms):
    """The delay before the next attempt (on the next candidate), or the
    reason to give up, a string. `status` is the upstream's HTTP status, or
    None when the attempt got no response; `error` then says why:
    "connect", "timeout", "reset", "protocol" or "other"."""
    if not idempotent:
        return "request is not idempotent"
    if status is not None and status not in config["statuses"]:
        return f"status {status} is not retried"
    if status is None and error not in TRANSIENT_ERRORS:
        return f"{error} error is not retried"
    if config["delay_ms"] >= deadline_remaining_ms:
        return f"a {config['delay_ms']} ms delay leaves no time before the deadline"
    return config["delay_ms"]

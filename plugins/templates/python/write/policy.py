"""The decisions of a write policy for levee, in plain Python: app.py hands
them levee's calls (the `write-policy` world of wit/levee-policy.wit, whose
doc comments are the manual), test_policy.py tests them.

It acknowledges a write once `acks` replicas stored it (by default the
service's W; never fewer than its `write_quorum_min`, the floor the host
holds anyway), fails it as soon as too few replicas are left to get there,
and waits otherwise.

Config, every field optional: {"acks": 2} (default: the service's W)
"""

import json

ACKS_MAX = 64
DEFAULTS = {"acks": None}


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
        if field == "acks":
            if type(value) is not int or not 1 <= value <= ACKS_MAX:
                raise ConfigError(f"config field `acks`: {json.dumps(value)} is outside 1..={ACKS_MAX}")
        else:
            raise ConfigError(f"config field `{field}`: unknown (expected acks)")
        config[field] = value
    return config


def decide(config, acked, answered, replicas, write_quorum, write_quorum_min):
    """"acknowledge", "wait", or the reason to fail, a sentence. `acked` of
    the `answered` replicas (of `replicas`) stored the write; the service
    has W = `write_quorum` and the floor `write_quorum_min`."""
    needed = max(write_quorum if config["acks"] is None else config["acks"], write_quorum_min)
    if acked >= needed:
        return "acknowledge"
    pending = max(replicas - answered, 0)
    if acked + pending < needed:
        return f"{acked} of the {needed} acks needed, and {pending} replica(s) left to answer"
    return "wait"

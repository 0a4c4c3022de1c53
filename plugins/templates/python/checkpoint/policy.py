"""The decisions of a checkpoint policy for levee, in plain Python: app.py
hands them levee's calls (the `checkpoint-policy` world of
wit/levee-policy.wit, whose doc comments are the manual), test_policy.py
tests them.

It checkpoints once `every_records` records were appended since the last
checkpoint, and compacts the log with it (deleting the segments that
checkpoint made unneeded), so the log does not grow without end.

Config, every field optional: {"every_records": 10000}
"""

import json

DEFAULTS = {"every_records": 10_000}


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
        if field == "every_records":
            if type(value) is not int or value < 1:
                raise ConfigError(f"config field `every_records`: {json.dumps(value)} is not a whole number of at least 1")
        else:
            raise ConfigError(f"config field `{field}`: unknown (expected every_records)")
        config[field] = value
    return config


def decide(config, records_since_checkpoint):
    """True when it is time to checkpoint (and compact)."""
    return records_since_checkpoint >= config["every_records"]

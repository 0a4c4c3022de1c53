"""The decisions of a routing policy for levee, in plain Python: app.py
hands them levee's calls (the `routing-policy` world of
wit/levee-policy.wit, whose doc comments are the manual), test_policy.py
tests them.

It keeps the ring's order, healthy candidates first: the healthy ones in
ring order, then the others in ring order (so a request still has somewhere
to go when every candidate is down). With `hedge_delay_ms` set, a read (GET
or HEAD) also goes to the next node if the first has not answered after
that long.

The plan depends only on the request's method and the candidates' order and
`healthy` flags, so app.py declares `cacheable-by-health-flags`: the host
may reuse a plan without calling `route` again.

Config, every field optional: {"hedge_delay_ms": 50} (no hedging without it)
"""

import json

HEDGE_DELAY_MS_MAX = 60_000
DEFAULTS = {"hedge_delay_ms": None}


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
        if field == "hedge_delay_ms":
            if type(value) is not int or not 1 <= value <= HEDGE_DELAY_MS_MAX:
                raise ConfigError(
                    f"config field `hedge_delay_ms`: {json.dumps(value)} is outside 1..={HEDGE_DELAY_MS_MAX}"
                )
        else:
            raise ConfigError(f"config field `{field}`: unknown (expected hedge_delay_ms)")
        config[field] = value
    return config


def route(config, method, candidates):
    """The plan as (order, hedge_delay_ms). `method` is the request's
    method in lower case ("get", "put", ...); `candidates` are
    (node, healthy) pairs in ring order."""
    healthy = [node for node, ok in candidates if ok]
    unhealthy = [node for node, ok in candidates if not ok]
    hedge_delay_ms = config["hedge_delay_ms"] if method in ("get", "head") else None
    return healthy + unhealthy, hedge_delay_ms

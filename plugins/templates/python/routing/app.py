"""A routing policy for levee, built into a component by componentize-py
(./build.sh): the glue between levee's `routing-policy` world and
policy.py, where the decisions are."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.routing import RoutePlan, RouteTraits

import policy

# The configured policy: defaults until `configure` succeeds; a failed
# `configure` leaves it as it was.
CONFIG = dict(policy.DEFAULTS)


class Routing(exports.Routing):
    def configure(self, config):
        global CONFIG
        try:
            CONFIG = policy.parse_config(config)
        except policy.ConfigError as e:
            raise Err(str(e))
        # True whatever the config: see policy.py.
        return RouteTraits(cacheable_by_health_flags=True)

    def set_nodes(self, nodes):
        # This policy needs no node table (candidates come in ring order).
        pass

    def route(self, facts, candidates):
        pairs = [(candidate.node, candidate.healthy) for candidate in candidates]
        order, hedge_delay_ms = policy.route(CONFIG, facts.method.name.lower(), pairs)
        return RoutePlan(order=order, hedge_delay_ms=hedge_delay_ms)

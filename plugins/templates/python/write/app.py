"""A write policy for levee, built into a component by componentize-py
(./build.sh): the glue between levee's `write-policy` world and policy.py,
where the decisions are."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.write import (
    WriteDecision_Acknowledge,
    WriteDecision_Fail,
    WriteDecision_Wait,
    WriteResult_Acked,
)

import policy

# The configured policy: defaults until `configure` succeeds; a failed
# `configure` leaves it as it was.
CONFIG = dict(policy.DEFAULTS)


class Write(exports.Write):
    def configure(self, config):
        global CONFIG
        try:
            CONFIG = policy.parse_config(config)
        except policy.ConfigError as e:
            raise Err(str(e))

    def set_nodes(self, nodes):
        # This policy needs no node table.
        pass

    def decide(self, facts, results, context):
        decided = policy.decide(
            CONFIG,
            acked=sum(isinstance(result.result, WriteResult_Acked) for result in results),
            answered=len(results),
            replicas=len(context.replicas),
            write_quorum=context.write_quorum,
            write_quorum_min=context.write_quorum_min,
        )
        if decided == "acknowledge":
            return WriteDecision_Acknowledge()
        if decided == "wait":
            return WriteDecision_Wait()
        return WriteDecision_Fail(decided)

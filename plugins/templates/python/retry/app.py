"""A retry policy for levee, built into a component by componentize-py
(./build.sh): the glue between levee's `retry-policy` world and policy.py,
where the decisions are."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.retry import Decision_GiveUp, Decision_Retry, RetryPlan, Target_Next
from wit_world.imports.types import AttemptResult_Status

import policy

# The configured policy: defaults until `configure` succeeds; a failed
# `configure` leaves it as it was.
CONFIG = dict(policy.DEFAULTS)


class Retry(exports.Retry):
    def configure(self, config):
        global CONFIG
        try:
            CONFIG = policy.parse_config(config)
        except policy.ConfigError as e:
            raise Err(str(e))

    def set_nodes(self, nodes):
        # This policy needs no node table.
        pass

    def decide(self, facts, outcome, context):
        if isinstance(outcome.result, AttemptResult_Status):
            status, error = outcome.result.value, None
        else:
            status, error = None, outcome.result.value.name.lower()
        decided = policy.decide(CONFIG, facts.idempotent, status, error, context.deadline_remaining_ms)
        if isinstance(decided, str):
            return Decision_GiveUp(decided)
        return Decision_Retry(RetryPlan(delay_ms=decided, target=Target_Next()))

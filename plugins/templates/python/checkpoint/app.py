"""A checkpoint policy for levee, built into a component by componentize-py
(./build.sh): the glue between levee's `checkpoint-policy` world and
policy.py, where the decisions are."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.checkpoint import Action

import policy

# The configured policy: defaults until `configure` succeeds; a failed
# `configure` leaves it as it was.
CONFIG = dict(policy.DEFAULTS)


class Checkpoint(exports.Checkpoint):
    def configure(self, config):
        global CONFIG
        try:
            CONFIG = policy.parse_config(config)
        except policy.ConfigError as e:
            raise Err(str(e))

    def decide(self, stats):
        if policy.decide(CONFIG, stats.records_since_checkpoint):
            return Action.CHECKPOINT_AND_COMPACT
        return Action.NONE

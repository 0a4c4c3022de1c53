import unittest

import policy


class PolicyTest(unittest.TestCase):
    def test_acknowledges_at_w_acks_and_fails_when_out_of_reach(self):
        config = policy.parse_config("{}")
        # Three replicas, W = 2, floor 1.
        def decide(config, acked, answered):
            return policy.decide(config, acked, answered, replicas=3, write_quorum=2, write_quorum_min=1)

        self.assertEqual(decide(config, acked=1, answered=1), "wait")
        self.assertEqual(decide(config, acked=2, answered=2), "acknowledge")
        self.assertIn("acks needed", decide(config, acked=0, answered=2))
        # Asking for all three: one failure is already too many.
        self.assertIn("acks needed", decide(policy.parse_config('{"acks": 3}'), acked=1, answered=2))

        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"acks": 0}')
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"quorum": 2}')


if __name__ == "__main__":
    unittest.main()

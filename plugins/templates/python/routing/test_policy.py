import unittest

import policy


class PolicyTest(unittest.TestCase):
    def test_healthy_candidates_first_in_ring_order(self):
        config = policy.parse_config('{"hedge_delay_ms": 50}')
        candidates = [(4, False), (2, True), (7, False), (1, True)]

        self.assertEqual(policy.route(config, "get", candidates), ([2, 1, 4, 7], 50))
        self.assertEqual(policy.route(config, "put", candidates), ([2, 1, 4, 7], None))
        self.assertEqual(policy.route(config, "get", []), ([], 50))

        self.assertIsNone(policy.parse_config("{}")["hedge_delay_ms"])
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"hedge_delay_ms": 0}')
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"hedge": 5}')


if __name__ == "__main__":
    unittest.main()

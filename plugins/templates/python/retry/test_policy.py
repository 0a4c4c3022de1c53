import unittest

import policy


class PolicyTest(unittest.TestCase):
    def test_retries_listed_statuses_and_transient_errors_only(self):
        config = policy.parse_config('{"statuses": [503], "delay_ms": 10}')

        self.assertEqual(policy.decide(config, True, 503, None, 1000), 10)
        self.assertEqual(policy.decide(config, True, None, "connect", 1000), 10)
        # Not listed, not transient, not idempotent, no time left: a reason.
        for idempotent, status, error, left in [
            (True, 502, None, 1000),
            (True, None, "protocol", 1000),
            (False, 503, None, 1000),
            (True, 503, None, 10),
        ]:
            self.assertIsInstance(policy.decide(config, idempotent, status, error, left), str)

        self.assertEqual(policy.parse_config("{}")["statuses"], (502, 503, 504))
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"statuses": [404]}')
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"delay": 5}')


if __name__ == "__main__":
    unittest.main()

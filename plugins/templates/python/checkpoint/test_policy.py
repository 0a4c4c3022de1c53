import unittest

import policy


class PolicyTest(unittest.TestCase):
    def test_checkpoints_every_n_records(self):
        config = policy.parse_config('{"every_records": 100}')

        self.assertFalse(policy.decide(config, 0))
        self.assertFalse(policy.decide(config, 99))
        self.assertTrue(policy.decide(config, 100))

        self.assertEqual(policy.parse_config("{}")["every_records"], 10_000)
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"every_records": 0}')
        with self.assertRaises(policy.ConfigError):
            policy.parse_config('{"every": 5}')


if __name__ == "__main__":
    unittest.main()

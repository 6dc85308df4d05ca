"""Scheduling, pure: schedules (cron with DST rules, intervals), misfire and overlap policies,
retries, the leader's fire planning, explain, retention. No I/O, no clock, no randomness:
the leader's stamped time comes in as an argument.
"""

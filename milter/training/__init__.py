"""``mailwarden train`` and ``evaluate``: building and measuring the shipped models.
Nothing on the scan path imports this package.
"""

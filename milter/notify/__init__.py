"""Sink: alert mail about held or refused messages, digested, rate-limited and never disclosing
content (queue, spool shared by pre-fork workers, and the mail composer).
"""

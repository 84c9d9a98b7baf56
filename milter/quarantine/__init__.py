"""Sink at hold time, review afterwards: the quarantine records, the review actions and
the MTA backends (Postfix hold queue, Sendmail quarantine) that release or delete held mail.
"""

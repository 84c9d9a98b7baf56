"""``mailwarden report``: the audit log turned into a static HTML page with plots.
An admin tool apart from the scan path: the daemon never imports it.
"""

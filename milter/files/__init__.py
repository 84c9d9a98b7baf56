"""The file front end: ``mailwarden score`` and ``replay`` push .eml, maildir, mbox and tar
archives through the same engine the milter uses, without an MTA or pymilter.
"""

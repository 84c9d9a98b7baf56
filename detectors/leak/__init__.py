"""The data-leak detector: validated detectors for secrets and personal data
(keys, tokens, passwords, card and account numbers), each finding masked and with a confidence.
"""

"""Training and evaluation of the content classifiers (spam, phishing, sensitive):
corpora, synthetic lures, model selection, portable export, figures.
"""

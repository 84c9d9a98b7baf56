"""The content detector: nltk preprocessing and TF-IDF + Naive Bayes scoring
(spam, phishing, sensitive) from portable model files that need numpy only.
"""

"""Training and evaluation of the sending-pattern models: histories, injected
scenarios, the model comparison (Isolation Forest, LOF, One-Class SVM, autoencoder) and figures.
"""

"""The sending-pattern detector: each sender's behaviour against a learned
baseline (features, profile codec, anomaly models) and the state stores it keeps them in
(embedded SQLite, Redis for several milters).
"""

"""Stores: where the customer plane keeps feature data and the control plane keeps its audit log.

One interface per store (`OnlineStore`, `OfflineStore`, `AuditStore`), each with a durable backend
(LMDB, Parquet) and an in-memory one that behaves the same for unit tests. Every durable store keeps a
format version and, in the same transaction as the data, the next Kafka offset to apply per
(topic, partition), so replaying a batch after a crash applies nothing twice (DESIGN: "Exactly once").

This layer imports `events` and storage libraries only; `lmdb` is imported nowhere else.
"""

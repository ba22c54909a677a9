"""Entities and sources of the fraud example: the same card transactions as files, as a Kafka topic and
pushed through the ingest API, plus a merchant table."""

from sdk import BatchSource, Entity, Field, PushSource, StreamSource

user = Entity(name="user", join_keys=["user_id"], description="A card holder", owner="risk-team")
merchant = Entity(name="merchant", join_keys=["merchant_id"], description="A shop that takes cards")

TRANSACTION_FIELDS = [
    Field("user_id", "string"),
    Field("merchant_id", "string"),
    Field("ts", "timestamp"),
    Field("amount", "float64"),
    Field("country", "string"),
    Field("is_online", "bool"),
]

transactions_history = BatchSource(
    name="transactions_history",
    path="s3://acme-features/transactions/*.parquet",
    timestamp_field="ts",
    schema=TRANSACTION_FIELDS,
    description="Every settled transaction, one Parquet file per day, in the customer's bucket",
    tags={"pii": "false"},
)

transactions_stream = StreamSource(
    name="transactions_stream",
    topic="card-transactions",
    timestamp_field="ts",
    schema=TRANSACTION_FIELDS,
    batch_source=transactions_history,
    description="Authorizations as they happen, one JSON object per Kafka record",
)

chargebacks = PushSource(
    name="chargebacks",
    timestamp_field="ts",
    schema=[Field("merchant_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")],
    description="Chargebacks pushed by the disputes service through the ingest API",
)

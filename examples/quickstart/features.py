"""The quickstart feature repository: one entity, one stream source, one feature view, one service.

Apply it with `featureplane apply examples/quickstart`, then produce JSON events to the
`transactions` topic (for example with `featureplane ingest transactions events.jsonl`).
"""

from sdk import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource

user = Entity(name="user", join_keys=["user_id"], description="A customer of the shop")

transactions = StreamSource(
    name="transactions",
    topic="transactions",
    timestamp_field="ts",
    schema=[
        Field("user_id", "string"),
        Field("ts", "timestamp"),
        Field("amount", "float64"),
        Field("merchant", "string"),
        Field("is_online", "bool"),
    ],
    description="Card transactions, one JSON object per Kafka record",
)

user_last_transaction = StreamFeatureView(
    name="user_last_transaction",
    source=transactions,
    entities=[user],
    features=[
        Attribute("amount", "float64", name="last_amount"),
        Attribute("merchant", "string", name="last_merchant"),
        Attribute("is_online", "bool", name="last_is_online"),
    ],
    description="The most recent transaction of each user",
)

fraud_detection = FeatureService(
    name="fraud_detection",
    features=[user_last_transaction],
    description="Features the fraud model reads at authorization time",
)

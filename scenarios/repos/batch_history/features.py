"""The batch side of examples/fraud, for the batch_backfill scenario: settled transactions as files in the
customer's bucket, materialized by jobs (a backfill on apply, on Rift and on external compute, and a
manual trigger), served online and read offline as point-in-time training data.

The source's path is the customer's bucket, as in a real repository; the scenario's `batch_files` step
points it at a small CSV that stands in for that table (scenarios/data/transactions.csv).
"""

from datetime import UTC, datetime, timedelta

from sdk import Aggregate, Attribute, BatchFeatureView, BatchSource, Entity, FeatureService, Field, LifetimeWindow

DAY = timedelta(days=1)
START = datetime(2026, 1, 1, tzinfo=UTC)

user = Entity(name="user", join_keys=["user_id"], description="A card holder")

transactions_history = BatchSource(
    name="transactions_history",
    path="s3://acme-features/transactions/*.csv",
    file_format="csv",
    timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("merchant_id", "string"), Field("ts", "timestamp"),
            Field("amount", "float64"), Field("country", "string")],
    description="Every settled transaction, in the customer's bucket",
)

# Backfilled on Rift from feature_start_time when applied: the rows cross to the data plane (F6).
user_spending = BatchFeatureView(
    name="user_spending",
    source=transactions_history,
    entities=[user],
    transformation="SELECT user_id, ts, amount, country, amount > 100 AS is_large FROM source",
    features=[Attribute("amount", "float64", name="last_amount"), Attribute("country", "string", name="last_country"),
              Attribute("is_large", "bool")],
    batch_schedule=DAY,
    feature_start_time=START,
)

# Backfilled next to the data by external compute: only the job status leaves the customer plane (F9).
user_totals = BatchFeatureView(
    name="user_totals",
    source=transactions_history,
    entities=[user],
    features=[Aggregate("amount", "sum", LifetimeWindow(), name="amount_sum_lifetime"),
              Aggregate("amount", "count", LifetimeWindow(), name="amount_count_lifetime")],
    batch_schedule=DAY,
    feature_start_time=START,
    compute="external",
)

# No feature_start_time: materialized only when an operator triggers a range.
user_merchants = BatchFeatureView(
    name="user_merchants",
    source=transactions_history,
    entities=[user],
    features=[Attribute("merchant_id", "string", name="last_merchant")],
    batch_schedule=DAY,
)

spending = FeatureService(name="spending", features=[user_spending, user_totals, user_merchants])
# Offline retrieval reads the attribute views (a batch view's aggregates are not kept offline yet).
spending_training = FeatureService(name="spending_training", features=[user_spending, user_merchants])

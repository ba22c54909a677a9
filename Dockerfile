# The featureplane image: every actor, Ray and the gateway in one container, against an external Kafka.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FEATUREPLANE_STATE_DIR=/app/.state

COPY pyproject.toml README.md ./
COPY events ./events
COPY stores ./stores
COPY engine ./engine
COPY actors ./actors
COPY gateway ./gateway
COPY scenarios ./scenarios
COPY deploy ./deploy
COPY sdk ./sdk
COPY examples ./examples
RUN pip install --no-cache-dir .

EXPOSE 8080
# docker-compose.yml passes the broker's address and its SASL logins (secure is the default); see there.
CMD ["featureplane", "--bootstrap", "kafka:9092", "up", "--foreground", "--host", "0.0.0.0", "--port", "8080"]

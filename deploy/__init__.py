"""Deployment: local infrastructure (Kafka broker) and the featureplane CLI."""

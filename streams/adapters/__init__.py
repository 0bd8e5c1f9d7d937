"""Thin adapters around the pure core: Kafka/Faust, the embedded broker, files, HTTP."""

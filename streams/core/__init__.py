"""The pure core: no Kafka, HTTP, Kubernetes, clock or file I/O. Time is always a parameter."""

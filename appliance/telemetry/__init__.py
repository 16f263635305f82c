"""Telemetry: Prometheus metrics, health probes, request ids and log redaction for `portico serve`."""

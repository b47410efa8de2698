"""`make bench`: failover latency, scale and a peer side by side (see docs/benchmarks.md)."""

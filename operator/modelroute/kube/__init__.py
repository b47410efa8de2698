"""The Kubernetes boundary: the REST client (a Protocol), watch-fed caches, Events, leader Lease."""

"""modelroute-operator: keep one stable Service pointed at the best healthy LLM backend."""

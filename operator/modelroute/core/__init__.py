"""Pure decisions: health, policy, the plan, status and conditions (no I/O, no clock)."""

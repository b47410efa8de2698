"""Composition and control flow: kopf handlers, the controller, one worker per route."""

"""Probing backends in their own dialects, and the shared probe loops."""

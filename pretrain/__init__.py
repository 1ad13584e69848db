"""Pretraining: data, models, memories, negative samplers, objectives, methods, the loop,
and the canonical checkpoint format every harness loads."""

"""Training: optimizer and schedules, train/eval steps, orbax checkpoints, the one train loop."""

"""Training: one loop (device, seed, resume, log, validation, checkpoints) with cross-entropy and SCST steps."""

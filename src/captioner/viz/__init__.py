"""Pictures of what the model looked at: attention frames, GIFs and strips."""

"""The networks codec trains: the Squeezer, the SAE trainer, and resumable checkpoints."""

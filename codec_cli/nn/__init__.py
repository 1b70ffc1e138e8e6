"""The networks codec trains: the Squeezer, the SAE trainer, resumable checkpoints and the learning-rate schedule."""

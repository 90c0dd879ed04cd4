"""Neural network models: the audio backbone (musicnn), the text encoder and the emotion heads."""

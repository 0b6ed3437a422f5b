"""From raw model outputs to detections: decoders and non-maximum suppression."""

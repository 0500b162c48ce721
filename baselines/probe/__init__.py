"""Methods of the probe protocol (frozen encoders scored by probes on their features)."""

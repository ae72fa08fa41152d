"""Health monitoring: the probe engine and how probe results become a health state."""

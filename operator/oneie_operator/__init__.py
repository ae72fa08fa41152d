"""oneie-operator."""

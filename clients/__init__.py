"""What runs on a client node: the Flower ClientApp and one train round's steps (attacks live in the core)."""

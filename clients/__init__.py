"""What runs on a client node: the Flower ClientApp and malicious client behaviours."""

"""What runs on a client node: the Flower ClientApp and a train round's steps.

The attacks a malicious client runs are pure torch code in :mod:`fedsim.attacks`.
"""
